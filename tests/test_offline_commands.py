"""A mutating command that waited in Telegram while the bot was down is not run (B4)."""

from __future__ import annotations

import time
from pathlib import Path

from tests.bot_harness import bot_running, worker_table

FIVE_MINUTES_AGO = 300


async def test_an_old_restart_is_ignored(tmp_path: Path) -> None:
    async with bot_running(tmp_path, [worker_table(tmp_path)]) as rig:
        await rig.wait_state("worker", "running")
        [before] = await rig.supervisor.status("worker")
        old = int(time.time()) - FIVE_MINUTES_AGO
        text = await rig.ask("/restart worker", date=old)
        assert text.startswith("ignored: /restart was sent while the bot was offline (5m")
        assert "send it again" in text
        [after] = await rig.supervisor.status("worker")
        assert after.pid == before.pid
        assert "/restart → ignored" in await rig.ask("/status worker")
        assert "ignored" in await rig.ask("/mute 2h", date=old)
        assert await rig.bot.service.notifier.muted_until() is None


async def test_an_old_status_is_answered(tmp_path: Path) -> None:
    async with bot_running(tmp_path, [worker_table(tmp_path)]) as rig:
        text = await rig.ask("/status", date=int(time.time()) - FIVE_MINUTES_AGO)
        assert "<b>1 workflow</b>" in text
