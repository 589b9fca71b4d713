"""The outbox never makes an alert louder or quieter than ``Alert.loud`` says.

Not for its timing (late, held, reminded) nor for what it replaced: a keyed
alert replacing a waiting twin sounds as the new alert; a merged message is
loud iff one of its alerts is; a mute's summary is loud iff one alert it
stands for is; a reminder is always loud.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from bot.outbox import Alert, Notifier
from supervisor.dbengine import make_engine
from tests.outbox_rig import CHAT, START, UNPACED, Clock, RecordingChat


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[sa.Engine]:
    engine = make_engine(f"sqlite:///{tmp_path / 'control.db'}")
    yield engine
    engine.dispose()


async def delivered(engine: sa.Engine, alerts: list[Alert], mute: bool = False) -> RecordingChat:
    """What reaches the chat when ``alerts`` wait in the outbox as a worker starts."""
    chat, clock = RecordingChat(), Clock()
    notifier = Notifier(engine, chat, CHAT, pacing=UNPACED, clock=clock)
    if mute:
        await notifier.mute(datetime.fromtimestamp(START + 60, UTC))
    for alert in alerts:
        await notifier.enqueue(alert)
    clock.now += 120  # late, and any mute has run out
    await notifier.start()
    try:
        assert await notifier.wait_idle(2)
    finally:
        await notifier.stop()
    return chat


@pytest.mark.parametrize("loud", [True, False])
async def test_a_replacing_alert_sounds_as_itself(engine: sa.Engine, loud: bool) -> None:
    chat = await delivered(
        engine, [Alert("v1", key="k", loud=not loud), Alert("v2", key="k", loud=loud)]
    )
    [message] = chat.delivered
    assert (message.message.text.split("\n")[0], message.silent) == ("v2", not loud)


@pytest.mark.parametrize("louds", [(False, False), (False, True), (True, True)])
async def test_a_merged_message_is_loud_iff_one_alert_is(
    engine: sa.Engine, louds: tuple[bool, bool]
) -> None:
    chat = await delivered(engine, [Alert(f"a{n}", loud=loud) for n, loud in enumerate(louds)])
    [message] = chat.delivered
    assert message.message.text.startswith("<b>2 alerts</b>")
    assert message.silent is not any(louds)


@pytest.mark.parametrize("louds", [(False, False), (False, True)])
async def test_a_mute_summary_is_loud_iff_one_held_alert_is(
    engine: sa.Engine, louds: tuple[bool, bool]
) -> None:
    alerts = [Alert(f"a{n}", loud=loud) for n, loud in enumerate(louds)]
    [summary] = (await delivered(engine, alerts, mute=True)).delivered
    assert summary.message.text.startswith("<b>While muted: 2 alerts</b>")
    assert summary.silent is not any(louds)


async def test_a_reminder_is_loud_even_of_a_quiet_alert(engine: sa.Engine) -> None:
    quiet = Alert("quiet", loud=False, mergeable=False, workflow="w", remind_after=60)
    chat = await delivered(engine, [quiet])
    assert [(d.message.text.startswith("⏰"), d.silent) for d in chat.delivered] == [
        (False, True),
        (True, False),
    ]
