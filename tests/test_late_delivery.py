"""An alert that reaches the chat more than 30 s after its event says when it happened.

The note is added by the worker when it sends (only then is the delay
known), in ``ALERT_TIMEZONE`` and always labelled; a merged message notes
each late alert in it; the result stays valid HTML within 4096 characters.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from bot.localtime import happened_note, local_time
from bot.notices import SendTime
from bot.outbox import Alert, Notifier
from bot.pacing import OutboxRow
from bot.text import TELEGRAM_LIMIT
from supervisor.dbengine import make_engine
from tests.bot_harness import bot_running
from tests.fakes.botapi import check_text
from tests.outbox_rig import CHAT, START, UNPACED, Clock, RecordingChat, notifier_on

BERLIN = ZoneInfo("Europe/Berlin")


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[sa.Engine]:
    engine = make_engine(f"sqlite:///{tmp_path / 'control.db'}")
    yield engine
    engine.dispose()


def test_local_times_are_always_labelled_and_dated_when_not_today() -> None:
    assert local_time(START, ZoneInfo("UTC"), START) == "16:00 UTC"
    assert local_time(START, BERLIN, START) == "17:00 CET"
    assert local_time(START - 86400, BERLIN, START) == "23 Nov 17:00 CET"
    assert local_time(START, ZoneInfo("Europe/Istanbul"), START) == "19:00 UTC+03"
    summer = datetime(2025, 7, 1, 12, tzinfo=UTC).timestamp()
    assert local_time(summer, BERLIN, summer) == "14:00 CEST"
    assert happened_note(START - 41 * 60, START, BERLIN) == "happened at 16:19 CET, 41m ago"


def test_only_an_alert_later_than_30s_gets_the_note_and_it_fits_the_limit() -> None:
    at = SendTime(START, BERLIN)
    prompt = OutboxRow(1, None, "<b>w</b> failed", "[]", True, True, happened_at=START - 30)
    assert at.shown(prompt) == "<b>w</b> failed"
    late = OutboxRow(1, None, "<b>w</b> failed", "[]", True, True, happened_at=START - 31)
    assert at.shown(late) == "<b>w</b> failed\n<i>happened at 16:59 CET, 31s ago</i>"
    full = OutboxRow(2, None, "<pre>" + "x" * 5000 + "</pre>", "[]", True, True, happened_at=0)
    shown = at.shown(full)
    assert len(shown) <= TELEGRAM_LIMIT
    assert shown.endswith("</pre>\n<i>happened at 01 Jan 1970 01:00 CET, 20416d 16h ago</i>")
    check_text(shown, "HTML")  # the stand-in Bot API's parser: no tag left open


async def test_the_worker_adds_the_note_at_send_time_per_merged_row(engine: sa.Engine) -> None:
    chat, clock = RecordingChat(), Clock()
    async with notifier_on(engine, chat, clock, BERLIN) as notifier:
        await notifier.enqueue(Alert("<b>a</b> failed", happened_at=START - 41 * 60))
        [single] = await chat.wait_for(1)
        assert single.message.text == "<b>a</b> failed\n<i>happened at 16:19 CET, 41m ago</i>"
        chat.delivered.clear()
        await notifier.mute(datetime.fromtimestamp(START + 3600, UTC))
        await notifier.enqueue(Alert("<b>b</b> failed", happened_at=START - 120))
        await notifier.enqueue(Alert("<b>c</b> failed"))  # no time given: it happens now
        await notifier.enqueue(Alert("<b>d</b> failed", happened_at=START - 10))
        await notifier.unmute()  # the summary, then nothing else
        await chat.wait_for(1)
        chat.delivered.clear()
    # Two alerts waiting when a worker starts, ten minutes after the first happened:
    clock.now += 600
    notifier = Notifier(engine, chat, CHAT, pacing=UNPACED, clock=clock, timezone=BERLIN)
    await notifier.enqueue(Alert("<b>e</b> failed", happened_at=START))
    await notifier.enqueue(Alert("<b>f</b> failed", happened_at=START + 590))
    await notifier.start()
    try:
        [merged] = await chat.wait_for(1)
    finally:
        await notifier.stop()
    assert merged.message.text == (
        "<b>2 alerts</b>\n\n<b>e</b> failed\n<i>happened at 17:00 CET, 10m ago</i>"
        "\n\n<b>f</b> failed"
    )


async def test_a_late_alert_says_when_through_the_real_bot(tmp_path: Path) -> None:
    async with bot_running(tmp_path, tables=[]) as rig:
        event = time.time() - 300
        await rig.bot.service.notifier.enqueue(Alert("<b>worker</b> crashed", happened_at=event))
        [message] = await rig.alert("<b>worker</b> crashed")
    when = datetime.fromtimestamp(event, UTC).strftime("%H:%M")
    assert f"\n<i>happened at {when} UTC, 5m" in message.text
    assert message.text.endswith(" ago</i>")
