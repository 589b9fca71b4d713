"""Mutes of one workflow or of all, the summary of what they held, and reminders until acknowledged.

A mute of a workflow holds that workflow's ordinary alerts only; critical
ones come through; the summary lists each incident once, in time order, a
crash that recovered meanwhile as one line. An alert to be reminded of is
repeated loudly every period until acknowledged or until its workflow is
started or stopped by hand, across restarts of the bot.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from bot.notices import Held, held_incidents
from bot.outbox import Alert, Mute
from supervisor.dbengine import make_engine
from tests.bot_harness import bot_running
from tests.conditions import wait_until
from tests.outbox_rig import START, Clock, RecordingChat, notifier_on

HOUR = 3600.0
BERLIN = ZoneInfo("Europe/Berlin")


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[sa.Engine]:
    engine = make_engine(f"sqlite:///{tmp_path / 'control.db'}")
    yield engine
    engine.dispose()


def at(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


async def test_a_workflow_mute_holds_only_that_workflows_ordinary_alerts(
    engine: sa.Engine,
) -> None:
    chat, clock = RecordingChat(), Clock()
    async with notifier_on(engine, chat, clock) as notifier:
        await notifier.mute(at(START + HOUR), "api")
        await notifier.enqueue(Alert("<b>api</b> error", workflow="api"))
        await notifier.enqueue(Alert("<b>api</b> hung", workflow="api", critical=True))
        await notifier.enqueue(Alert("<b>etl</b> error", workflow="etl", mergeable=False))
        await notifier.enqueue(Alert("bot note", mergeable=False))
        await chat.wait_for(3)
        assert chat.texts == ["<b>api</b> hung", "<b>etl</b> error", "bot note"]
        assert await notifier.mutes() == [Mute("api", at(START + HOUR))]
        assert await notifier.muted_until("api") == at(START + HOUR)
        assert await notifier.muted_until("etl") is None
        assert await notifier.muted_until() is None
        assert await notifier.unmute("api") == 1
        await chat.wait_for(4)
    assert chat.texts[3] == "<b>While muted: 1 alert</b>\n• api error"


async def test_everything_muted_and_one_workflow_longer_release_in_turn(
    engine: sa.Engine,
) -> None:
    chat, clock = RecordingChat(), Clock()
    async with notifier_on(engine, chat, clock) as notifier:
        await notifier.mute(at(START + HOUR))
        await notifier.mute(at(START + 2 * HOUR), "api")
        assert await notifier.mutes() == [
            Mute(None, at(START + HOUR)),
            Mute("api", at(START + 2 * HOUR)),
        ]
        assert await notifier.muted_until("api") == at(START + 2 * HOUR)
        await notifier.enqueue(Alert("<b>api</b> error", workflow="api"))
        await notifier.enqueue(Alert("<b>etl</b> error", workflow="etl"))
        clock.now += HOUR  # everything's mute runs out: etl's alert, not api's
        notifier.wake()
        await chat.wait_for(1)
        assert chat.texts == ["<b>While muted: 1 alert</b>\n• etl error"]
        assert await notifier.mutes() == [Mute("api", at(START + 2 * HOUR))]
        clock.now += HOUR
        notifier.wake()
        await chat.wait_for(2)
    assert chat.texts[1] == "<b>While muted: 1 alert</b>\n• api error"


async def test_unmute_without_a_name_ends_every_mute(engine: sa.Engine) -> None:
    chat, clock = RecordingChat(), Clock()
    async with notifier_on(engine, chat, clock) as notifier:
        await notifier.mute(at(START + HOUR), "api")
        await notifier.mute(at(START + HOUR), "etl")
        await notifier.enqueue(Alert("<b>api</b> error", workflow="api"))
        await notifier.enqueue(Alert("<b>etl</b> error", workflow="etl"))
        assert await notifier.unmute() == 2
        assert await notifier.mutes() == []
        await chat.wait_for(1)
    assert chat.texts == ["<b>While muted: 2 alerts</b>\n• api error\n• etl error"]


def test_the_summary_lists_each_incident_once_in_time_order() -> None:
    held = [
        Held(None, "<b>etl</b> error: disk", START + 300),
        Held("incident:api:1", "💥 <b>api</b> crashed: exit 3\nrestarting", START + 60),
        Held("incident:etl:2", "⏳ <b>etl</b> hung\nrestarting", START + 400),
        Held("incident:api:1", "💥 <b>api</b> crashed: exit 3\nrestarted, attempt 1", START + 70),
        Held("incident:api:1", "💥 <b>api</b> crashed: exit 3\n✅ recovered", START + 180),
        Held("incident:etl:2", "⏳ <b>etl</b> failed 2 times in a row", START + 500),
    ]
    assert held_incidents(held, START + 600, BERLIN) == [
        "💥 api crashed: exit 3 — 17:01 CET, recovered 17:03 CET",
        "<b>etl</b> error: disk",
        "⏳ <b>etl</b> failed 2 times in a row",
    ]


async def test_a_held_crash_that_recovered_is_one_line_of_the_summary(engine: sa.Engine) -> None:
    chat, clock = RecordingChat(), Clock()
    async with notifier_on(engine, chat, clock, BERLIN) as notifier:
        await notifier.mute(at(START + HOUR), "api")
        key = "incident:api:1"
        crash = "💥 <b>api</b> crashed: exit 3\nrestarting"
        await notifier.enqueue(Alert(crash, key=key, workflow="api", loud=False))
        clock.now += 120
        recovered = "💥 <b>api</b> crashed: exit 3\n✅ <b>api</b> recovered after 2m down"
        await notifier.enqueue(Alert(recovered, key=key, workflow="api", loud=False))
        assert await notifier.unmute("api") == 1
        [summary] = await chat.wait_for(1)
    assert summary.message.text == (
        "<b>While muted: 1 alert</b>\n• 💥 api crashed: exit 3 — 17:00 CET, recovered 17:02 CET"
    )
    assert summary.silent  # nothing it stands for was loud


async def test_a_give_up_is_repeated_loudly_until_acknowledged(engine: sa.Engine) -> None:
    chat, clock = RecordingChat(), Clock()
    give_up = Alert(
        "🛑 <b>api</b> gave up", critical=True, mergeable=False, workflow="api", remind_after=HOUR
    )
    async with notifier_on(engine, chat, clock) as notifier:
        await notifier.enqueue(give_up)
        await chat.wait_for(1)
        clock.now += HOUR
        notifier.wake()
        [_, first] = await chat.wait_for(2)
    assert first.message.text == (
        "⏰ <b>Reminder</b>, not acknowledged: <i>happened at 16:00 UTC, 1h ago</i>\n"
        "🛑 <b>api</b> gave up"
    )
    assert not first.silent
    # The reminder is a row: a new run of the bot goes on with it.
    clock.now += HOUR
    async with notifier_on(engine, chat, clock) as notifier:
        [*_, second] = await chat.wait_for(3)
        assert "happened at 16:00 UTC, 2h ago" in second.message.text
        assert await notifier.acknowledge("api") == 1
        assert await notifier.acknowledge("api") == 0
        clock.now += 5 * HOUR
        await notifier.enqueue(Alert("later", mergeable=False))
        await wait_until(lambda: "later" in chat.texts)
        assert await notifier.wait_idle(1)  # a due reminder would be queued by now
    assert chat.texts[3:] == ["later"]


async def test_starting_or_stopping_the_workflow_by_hand_ends_its_reminders(
    engine: sa.Engine,
) -> None:
    chat, clock = RecordingChat(), Clock()
    async with notifier_on(engine, chat, clock) as notifier:
        for name in ("api", "etl"):
            await notifier.enqueue(
                Alert(f"{name} gave up", mergeable=False, workflow=name, remind_after=HOUR)
            )
        await notifier.enqueue(
            Alert("api started by hand", mergeable=False, workflow="api", ends_reminders=True)
        )
        await chat.wait_for(3)
        clock.now += HOUR
        notifier.wake()
        await chat.wait_for(4)
        assert await notifier.wait_idle(1)  # api's reminder would be queued with etl's
    [reminder] = chat.texts[3:]
    assert "Reminder" in reminder
    assert "etl gave up" in reminder


async def test_a_workflow_mute_holds_its_alerts_through_the_real_bot(tmp_path: Path) -> None:
    async with bot_running(tmp_path, tables=[]) as rig:
        notifier = rig.bot.service.notifier
        await notifier.mute(datetime.now(UTC).replace(year=2099), "worker")
        await notifier.enqueue(Alert("<b>worker</b> error: held", workflow="worker"))
        await notifier.enqueue(Alert("<b>demo</b> error: flows", workflow="demo"))
        await rig.alert("<b>demo</b> error: flows")
        assert await notifier.wait_idle(2)
        assert not rig.fake.sent_matching(lambda m: "held" in m.text)
        assert await notifier.unmute("worker") == 1
        [summary] = await rig.alert("While muted: 1 alert")
    assert summary.text == "<b>While muted: 1 alert</b>\n• worker error: held"
