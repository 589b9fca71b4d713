"""The digest comes once a day at ALERT_DIGEST_AT (or every set period) and says what changed.

What changed is read from two ``supervisor.status()`` snapshots: the one the
last digest took, kept in the control DB so a restart of the bot resets
nothing, and now's. The timetable and the diff are pure; the scheduler runs
on a hand-moved clock.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime, time
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from bot.digest import DigestScheduler, Seen, digest_text, next_digest
from supervisor.dbengine import make_engine
from supervisor.events import WorkflowStatus
from tests.outbox_rig import START, Clock, RecordingChat, notifier_on

BERLIN = ZoneInfo("Europe/Berlin")
NINE = time(9, 0)
DAY = 86400.0


def epoch(year: int, month: int, day: int, hour: int, minute: int) -> float:
    """A moment given in Berlin's local time."""
    return datetime(year, month, day, hour, minute, tzinfo=BERLIN).timestamp()


def test_the_digest_comes_daily_at_the_set_time_in_the_set_zone() -> None:
    monday_10 = epoch(2025, 11, 24, 10, 0)
    assert next_digest(monday_10, period=0, at=NINE, tz=BERLIN) == epoch(2025, 11, 25, 9, 0)
    monday_8 = epoch(2025, 11, 24, 8, 0)
    assert next_digest(monday_8, period=0, at=NINE, tz=BERLIN) == epoch(2025, 11, 24, 9, 0)
    before_dst = epoch(2026, 3, 28, 9, 0)  # clocks go forward that night: still 09:00 local
    assert next_digest(before_dst, period=0, at=NINE, tz=BERLIN) == epoch(2026, 3, 29, 9, 0)
    assert next_digest(monday_10, period=600, at=NINE, tz=BERLIN) == monday_10 + 600


def test_the_digest_says_only_what_changed() -> None:
    previous = {
        "api": Seen("running", None, "2025-11-24T08:00:00+00:00"),
        "etl": Seen("running", "old", "2025-11-24T08:00:00+00:00"),
        "old": Seen("stopped"),
        "same": Seen("running", "known", "2025-11-24T08:00:00+00:00"),
    }
    current = {
        "api": Seen("running", None, "2025-11-24T12:00:00+00:00"),
        "etl": Seen("gave_up", "disk <full>", None),
        "new": Seen("running"),
        "same": Seen("running", "known", "2025-11-24T08:00:00+00:00"),
    }
    since = epoch(2025, 11, 23, 9, 0)
    text = digest_text(previous, current, since, BERLIN, now=since + DAY)
    assert text == (
        "📋 <b>Digest</b>: since 23 Nov 09:00 CET\n"
        "• <b>api</b>: restarted\n"
        "• <b>etl</b>: running → gave up; new error: disk &lt;full&gt;\n"
        "• <b>new</b>: new, running\n"
        "• <b>old</b>: no longer configured"
    )
    unchanged = digest_text(current, current, since, BERLIN, now=since + 3600)
    assert unchanged == "📋 <b>Digest</b>: no changes since 09:00 CET"


def test_the_digest_says_what_the_week_cost_dearest_first() -> None:
    since = epoch(2025, 11, 23, 9, 0)
    spent = {f"w{i}": Seen("running", week_usd=float(i)) for i in range(6)}
    text = digest_text(spent, spent, since, BERLIN, now=since + 3600)
    assert text == (
        "📋 <b>Digest</b>: no changes since 09:00 CET\n"
        "💸 the last 7 days: $15.00 (w5 $5.00 · w4 $4.00 · w3 $3.00 · 2 more); /cost for all"
    )


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[sa.Engine]:
    engine = make_engine(f"sqlite:///{tmp_path / 'control.db'}")
    yield engine
    engine.dispose()


class Workflows:
    """What ``supervisor.status()`` answers; the test changes it."""

    def __init__(self) -> None:
        self.statuses: list[WorkflowStatus] = [WorkflowStatus("api", "running")]

    async def __call__(self) -> Sequence[WorkflowStatus]:
        return self.statuses


async def test_the_scheduler_sends_a_quiet_digest_when_due_and_keeps_its_snapshot(
    engine: sa.Engine,
) -> None:
    chat, clock, workflows = RecordingChat(), Clock(), Workflows()  # START: 17:00 CET

    def scheduler() -> DigestScheduler:
        return DigestScheduler(
            engine, workflows, notifier, period=0, at=NINE, tz=BERLIN, clock=clock
        )

    async with notifier_on(engine, chat, clock, BERLIN) as notifier:
        assert await scheduler().tick() == epoch(2025, 11, 25, 9, 0) - START  # baseline only
        workflows.statuses = [WorkflowStatus("api", "crashed", last_error="boom")]
        clock.now = epoch(2025, 11, 25, 9, 0)
        # A new scheduler (the bot restarted) compares with the stored snapshot.
        assert await scheduler().tick() == DAY
        [digest] = await chat.wait_for(1)
        assert digest.message.text == (
            "📋 <b>Digest</b>: since 24 Nov 17:00 CET\n"
            "• <b>api</b>: running → crashed; new error: boom"
        )
        assert digest.silent
        assert await scheduler().tick() == DAY  # not due again: nothing sent twice
        clock.now += DAY
        assert await scheduler().tick() == DAY
        [*_, quiet] = await chat.wait_for(2)
    assert quiet.message.text == "📋 <b>Digest</b>: no changes since 25 Nov 09:00 CET"
