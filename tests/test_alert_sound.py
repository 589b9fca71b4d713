"""B11: whether an alert makes a sound depends on its severity alone (docs/SPEC.md's table)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from bot.alerts import AlertComposer
from supervisor.events import (
    BudgetPaused,
    BudgetResumed,
    BudgetWarning,
    Crashed,
    Diagnosed,
    ErrorReported,
    Event,
    Finished,
    GaveUp,
    Hung,
    IncidentClosed,
    Recovered,
    Reloaded,
    Restarted,
    StateReadable,
    StateUnreadable,
    StatusChanged,
)
from tests.test_give_up_diagnosis import VERDICT
from tests.test_message_rendering import NAME, NOW, incident

COMMON: dict[str, object] = {"workflow": NAME, "time": NOW}

# The table in docs/SPEC.md, row by row: (what happened, the event, loud?).
SOUND_TABLE: list[tuple[str, Event, bool]] = [
    ("crash, being restarted", incident(Crashed, exit_code=1), False),
    ("hang, being restarted", incident(Hung), False),
    ("crash, left down by its policy", incident(Crashed, exit_code=1, will_restart=False), True),
    ("crash, attempts used up", incident(Crashed, will_restart=False, gives_up=True), True),
    ("hang, left down", incident(Hung, will_restart=False), True),
    (
        "gave up",
        GaveUp(**COMMON, incident="i1", attempts=3, cause="crash", last_detail="x"),  # type: ignore[arg-type]
        True,
    ),
    ("diagnosis of a give-up", Diagnosed(**COMMON, incident="i1", verdict=VERDICT), False),  # type: ignore[arg-type]
    ("error recorded", ErrorReported(**COMMON, text="boom"), True),  # type: ignore[arg-type]
    (
        "status -> error",
        StatusChanged(**COMMON, old="running", new="error"),  # type: ignore[arg-type]
        True,
    ),
    (
        "restarted in an incident",
        Restarted(
            **COMMON,  # type: ignore[arg-type]
            reason="crash",
            attempt=1,
            max_attempts=3,
            incident="i1",
            cause="crash",
            failures=1,
            last_detail="exit code 1",
        ),
        False,
    ),
    ("recovered", Recovered(**COMMON, incident="i1", down_seconds=5.0), False),  # type: ignore[arg-type]
    (
        "incident ended by hand",
        IncidentClosed(
            **COMMON,  # type: ignore[arg-type]
            incident="i1",
            how="started",
            cause="crash",
            failures=2,
            last_detail="x",
        ),
        False,
    ),
    ("finished", Finished(**COMMON), False),  # type: ignore[arg-type]
    ("reloaded", Reloaded(**COMMON, path="flow.py"), False),  # type: ignore[arg-type]
    ("state DB unreadable", StateUnreadable(**COMMON, reason="corrupt"), False),  # type: ignore[arg-type]
    ("state DB readable again", StateReadable(**COMMON, unreadable_seconds=9.0), False),  # type: ignore[arg-type]
    ("80% of its budget", BudgetWarning(**COMMON, spent_usd=4.0, budget_usd=5.0), False),  # type: ignore[arg-type]
    (
        "paused by its budget",
        BudgetPaused(
            **COMMON,  # type: ignore[arg-type]
            spent_usd=5.0,
            budget_usd=5.0,
            allowance_usd=5.0,
            resumes_at=NOW + timedelta(hours=3),
        ),
        True,
    ),
    (
        "resumed after its budget paused it",
        BudgetResumed(
            **COMMON,  # type: ignore[arg-type]
            how="new_day",
            budget_usd=5.0,
            allowance_usd=5.0,
            paused_at=NOW,
        ),
        False,
    ),
]


@pytest.mark.parametrize(("what", "event", "loud"), SOUND_TABLE, ids=[r[0] for r in SOUND_TABLE])
def test_every_alert_of_an_event_sounds_as_its_severity_says(
    what: str, event: Event, loud: bool
) -> None:
    alerts = AlertComposer().alerts(event)
    assert alerts, what
    assert {alert.loud for alert in alerts} == {loud}


def test_the_same_event_sounds_the_same_whatever_came_before() -> None:
    """An edit in an incident, or a repeat, does not change the sound of its kind."""
    composer = AlertComposer()
    first = composer.alerts(incident(Crashed, exit_code=1))
    again = composer.alerts(incident(Crashed, exit_code=1, failures=2))
    assert [a.loud for a in first] == [a.loud for a in again] == [False]
    left_down = composer.alerts(incident(Crashed, exit_code=1, failures=3, will_restart=False))
    assert [a.loud for a in left_down] == [True]
