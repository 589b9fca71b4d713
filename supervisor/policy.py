"""The restart policy as pure decisions: easy to read, easy to test, no clock inside.

``restart`` follows systemd and Docker: ``on-failure`` restarts after a crash
or a hang, ``always`` also after a clean exit, ``never`` not at all (a hung
process is still killed). Delays follow ``restart_backoff_seconds``, the last
value repeating; after ``max_restart_attempts`` restarts in a row the
workflow is given up and waits for a person.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

RestartMode = Literal["on-failure", "always", "never"]
ExitCause = Literal["finished", "crash", "hang"]


@dataclass(frozen=True, slots=True)
class Decision:
    """What to do after an exit: restart after ``delay`` seconds, give up, or leave it."""

    action: Literal["restart", "give_up", "leave"]
    attempt: int = 0  # the number the next restart will have (1-based), when restarting
    delay: float = 0.0


def backoff_delay(schedule: Sequence[float], attempt: int) -> float:
    """Delay before restart number ``attempt`` (1-based); the last value repeats."""
    return float(schedule[min(attempt, len(schedule)) - 1])


def decide(
    *,
    mode: RestartMode,
    cause: ExitCause,
    restarts: int,
    max_restarts: int,
    schedule: Sequence[float],
) -> Decision:
    """Decide what follows an exit, given how many restarts this incident already took."""
    wanted = cause == "hang" and mode != "never"
    wanted = wanted or (cause == "crash" and mode in ("on-failure", "always"))
    wanted = wanted or (cause == "finished" and mode == "always")
    if not wanted:
        return Decision("leave")
    if restarts >= max_restarts:
        return Decision("give_up")
    attempt = restarts + 1
    return Decision("restart", attempt=attempt, delay=backoff_delay(schedule, attempt))
