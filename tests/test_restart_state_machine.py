"""S10: the restart state machine's table, and its one funnel refusing what the table lacks."""

from __future__ import annotations

from typing import get_args

import pytest

from supervisor.events import ProcessState
from supervisor.restarts import TRANSITIONS, BadTransition, check_transition

STATES: tuple[ProcessState, ...] = get_args(ProcessState)


def test_every_state_has_a_row_and_every_state_can_be_reached() -> None:
    assert set(TRANSITIONS) == set(STATES)
    reached = {"stopped"} | {new for targets in TRANSITIONS.values() for new in targets}
    assert reached == set(STATES)


def test_every_state_can_lead_back_to_a_running_process() -> None:
    """No dead end: from anywhere, some path leads to ``starting`` (a person's start)."""
    for state in STATES:
        seen, frontier = {state}, [state]
        while frontier:
            for new in TRANSITIONS[frontier.pop()]:
                if new not in seen:
                    seen.add(new)
                    frontier.append(new)
        assert "starting" in seen, state


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("stopped", "running"),  # a process is always started first
        ("stopped", "gave_up"),  # nothing gives up without having run
        ("gave_up", "backoff"),  # a give-up waits for a person, not a timer
        ("crashed", "backoff"),
        ("paused", "starting"),  # resume goes through stopped, which clears the pause
        ("backoff", "running"),
        ("hung", "running"),  # a hung process is ended, never trusted again
        ("hung", "finished"),
    ],
)
def test_transitions_the_table_lacks_are_refused(old: ProcessState, new: ProcessState) -> None:
    with pytest.raises(BadTransition, match=f"{old} -> {new}"):
        check_transition("wf", old, new, "test")


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("stopped", "starting"),
        ("starting", "running"),
        ("running", "hung"),
        ("hung", "backoff"),
        ("backoff", "starting"),
        ("running", "gave_up"),
        ("gave_up", "starting"),
        ("running", "paused"),
        ("paused", "stopped"),
        ("running", "running"),  # staying is not a change
    ],
)
def test_the_lifecycle_transitions_are_allowed(old: ProcessState, new: ProcessState) -> None:
    check_transition("wf", old, new, "test")
