"""Which failure a diagnosis is about, read from the events and the log: no I/O.

The events say how the process ended (an exit code, a signal, a hang); the
log says what the code raised. ``Failure`` joins the two into the fingerprint
a diagnosis is cached and counted by, and finds the start that the diff is
taken from.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from supervisor.diagnosis.tracebacks import Traceback, find_tracebacks, process_signature
from supervisor.events import EventRecord, WorkflowStatus
from supervisor.logs import MARK_TAG, STARTING

FAILURE_KINDS = frozenset({"crashed", "hung", "gave_up"})
_HEALTHY_KINDS = frozenset({"recovered", "finished", "stopped"})
_SIGNAL = re.compile(r"killed by (SIG[A-Z0-9]+)")
_EXIT = re.compile(r"exit code (-?\d+)")


@dataclass(frozen=True, slots=True)
class Failure:
    signature: str
    count: int  # how often this signature came lately: in the events, or runs in the log
    traceback: Traceback | None  # the one the signature comes from, if any
    healthy_since: datetime | None  # the last start before this incident's first failure


def run_starts(lines: Sequence[str]) -> list[int]:
    """Indexes of the supervisor's ``starting`` marks: where each run's output begins."""
    mark = f" {MARK_TAG} {STARTING}"
    return [index for index, line in enumerate(lines) if line.startswith("---") and mark in line]


def find_failure(
    lines: Sequence[str],
    tracebacks: Sequence[Traceback],
    events: Sequence[EventRecord],
    status: WorkflowStatus,
) -> Failure:
    """The latest failure: a signal or a hang wins over a traceback (it is how the
    process died); otherwise the latest run's last traceback, else the exit code.

    ``tracebacks`` are those found in ``lines``; ``events`` are newest first.
    """
    starts = run_starts(lines)
    latest_run = starts[-1] if starts else 0
    own = [tb for tb in tracebacks if tb.start >= latest_run]
    if not own and not tracebacks and status.last_error:
        own = find_tracebacks(status.last_error.splitlines())
    failure = next((e for e in events if e.kind in FAILURE_KINDS), None)
    ended = event_signature(failure) if failure else _status_signature(status)
    healthy = _healthy_since(events)
    if ended is not None and (ended == "hang" or ended.startswith("signal:") or not own):
        same = sum(event_signature(e) == ended for e in events if e.kind in ("crashed", "hung"))
        return Failure(ended, max(same, 1), None, healthy)
    if own:
        last = own[-1]
        return Failure(
            last.signature, _runs_with(last.signature, tracebacks, starts), last, healthy
        )
    return Failure("unknown", 1, None, healthy)


def event_signature(event: EventRecord) -> str | None:
    """The fingerprint of an exit or hang event (a give-up names its last failure)."""
    if event.kind == "hung" or "no heartbeat" in event.detail:
        return "hang"
    if "could not start" in event.detail:
        return "could-not-start"
    signal = _SIGNAL.search(event.detail)
    code = _EXIT.search(event.detail)
    if signal is None and code is None:
        return None
    exit_code = int(code.group(1)) if code else None
    return process_signature(signal=signal and signal.group(1), exit_code=exit_code, hung=False)


def _status_signature(status: WorkflowStatus) -> str | None:
    if status.state != "hung" and status.exit_code is None:
        return None
    return process_signature(signal=None, exit_code=status.exit_code, hung=status.state == "hung")


def _runs_with(signature: str, tracebacks: Sequence[Traceback], starts: Sequence[int]) -> int:
    """In how many runs of the log a traceback with ``signature`` appeared."""
    runs = {
        sum(start <= tb.start for start in starts) for tb in tracebacks if tb.signature == signature
    }
    return max(len(runs), 1)


def _healthy_since(events: Sequence[EventRecord]) -> datetime | None:
    """When the code that last ran well was started (events newest first).

    The run that ended well (a recovery, a finish, a stop) before the newest
    failure is the healthy one; its start is what the diff is taken from,
    since the code a process runs is the code at its start. With no run that
    ended well in sight, the oldest start shown is the best guess.
    """
    newest_failure = next((i for i, e in enumerate(events) if e.kind in FAILURE_KINDS), None)
    if newest_failure is None:
        return None
    older = events[newest_failure + 1 :]
    healthy = next((i for i, e in enumerate(older) if e.kind in _HEALTHY_KINDS), None)
    if healthy is None:
        return next((e.time for e in reversed(older) if e.kind == "started"), None)
    start = next((e for e in older[healthy + 1 :] if e.kind == "started"), older[healthy])
    return start.time
