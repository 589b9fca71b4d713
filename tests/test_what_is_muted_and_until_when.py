"""Mutes as the chat shows them: until when, in ``ALERT_TIMEZONE``, and on ``/status``.

A person who muted the chat at night and looks at ``/status`` in the
morning must see that alerts are still held, and until when in their own
time, not in UTC.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from bot.localtime import local_time
from tests.bot_harness import BotRig, bot_running

PARIS = ZoneInfo("Europe/Paris")


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[BotRig]:
    async with bot_running(tmp_path, alert_timezone="Europe/Paris") as running:
        yield running


def shown(moment: datetime) -> str:
    """``16:30 CET``: the moment as the chat should show it (with the date if not today)."""
    return local_time(moment.timestamp(), PARIS, time.time())


async def test_a_mute_says_until_when_in_the_alert_timezone(rig: BotRig) -> None:
    text = await rig.ask("/mute 2h")
    [everything] = await rig.bot.service.notifier.mutes()
    assert f"🔕 Muted for 2h (until {shown(everything.until)})." in text
    assert everything.until.astimezone(PARIS).strftime("%H:%M %Z") in text  # CET or CEST
    text = await rig.ask("/mute worker 30m")
    [_, worker] = await rig.bot.service.notifier.mutes()
    assert f"🔕 <b>worker</b> muted for 30m (until {shown(worker.until)})." in text


async def test_status_names_the_mutes_in_force_first_and_nothing_without_them(
    rig: BotRig,
) -> None:
    assert (await rig.ask("/status")).startswith("<b>2 workflows</b>\n")
    await rig.ask("/mute 2h")
    await rig.ask("/mute worker 3h")
    everything, worker = await rig.bot.service.notifier.mutes()
    first, second, *_ = (await rig.ask("/status")).split("\n")
    assert first == (
        f"🔕 muted: everything until {shown(everything.until)} · worker until {shown(worker.until)}"
    )
    assert second == "<b>2 workflows</b>"
    await rig.ask("/unmute")
    assert (await rig.ask("/status")).startswith("<b>2 workflows</b>\n")
