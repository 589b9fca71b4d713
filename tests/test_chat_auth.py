"""Only configured chats and users may command the bot (B1), and the token is never logged (B6).

A stranger's command or button press gets no reply and changes nothing; the
first attempt from each chat is logged once, with its chat id, so the owner
can allow it on purpose.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from tests.bot_harness import (
    ALERT_CHAT,
    COMMAND_CHAT,
    TOKEN,
    USER,
    BotRig,
    bot_running,
    worker_table,
)
from tests.fakes.botapi import FakeBotAPI

STRANGER_CHAT = 666
STRANGER = 667


async def settle(rig: BotRig) -> None:
    """Proof that earlier updates were handled: a later allowed command is answered."""
    await rig.ask("/workflows")


async def test_a_stranger_gets_no_reply_and_changes_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="bot")
    async with bot_running(tmp_path, [worker_table(tmp_path)]) as rig:
        await rig.wait_state("worker", "running")
        [before] = await rig.supervisor.status("worker")
        rig.fake.add_message("/stop worker", STRANGER_CHAT, STRANGER)
        rig.fake.add_message("/status", STRANGER_CHAT, STRANGER)
        rig.order("worker", error="boom")
        [alert] = await rig.alert("❗ <b>worker</b> error")
        rig.fake.add_callback("restart:worker", STRANGER_CHAT, STRANGER, alert.message_id)
        await settle(rig)
        [after] = await rig.supervisor.status("worker")
        assert after.pid == before.pid
        assert after.state == "running"
        assert not rig.fake.sent_matching(lambda m: m.chat_id == STRANGER_CHAT)
        assert rig.fake.answered_callbacks == []
    denied = [r.getMessage() for r in caplog.records if "not allowed" in r.getMessage()]
    assert len(denied) == 1  # once per chat, not per attempt
    assert f"ignoring chat {STRANGER_CHAT}" in denied[0]


async def test_allowed_users_restrict_who_may_command(tmp_path: Path) -> None:
    async with bot_running(
        tmp_path, [worker_table(tmp_path)], telegram_allowed_user_ids=[USER]
    ) as rig:
        await rig.wait_state("worker", "running")
        seen = {m.message_id for m in rig.fake.sent_matching()}
        rig.fake.add_message("/stop worker", COMMAND_CHAT, STRANGER)
        rig.order("worker", error="boom")
        [alert] = await rig.alert("❗ <b>worker</b> error")
        rig.fake.add_callback("stop:worker", ALERT_CHAT, STRANGER, alert.message_id)
        await settle(rig)
        assert rig.fake.answered_callbacks == []
        assert not rig.fake.sent_matching(
            lambda m: m.message_id not in seen and "stopped" in m.text
        )
        [status] = await rig.supervisor.status("worker")
        assert status.state == "running"
        assert "⏹ stopped" in await rig.ask("/stop worker")


async def test_the_token_is_never_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    fake = FakeBotAPI(TOKEN).start()
    try:
        async with bot_running(tmp_path, [worker_table(tmp_path)], fake=fake) as rig:
            fake.fail_next("sendMessage", 500, count=2)
            fake.fail_next("getUpdates", 502)
            rig.order("worker", error="x")
            await rig.alert("❗ <b>worker</b> error")
            fake.fail_next("sendMessage", 400)
            fake.add_message("/status", COMMAND_CHAT, USER)
            await settle(rig)
            await asyncio.sleep(0.1)
    finally:
        fake.stop()
    assert any("HTTP" in r.getMessage() or "Bot API" in r.getMessage() for r in caplog.records)
    assert TOKEN.split(":")[1] not in caplog.text
    for record in caplog.records:
        assert TOKEN.split(":")[1] not in record.getMessage()
