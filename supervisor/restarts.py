"""The restart state machine: which process state may follow which.

Every change of a workflow's process state goes through one funnel,
``Supervisor._to`` (as supervisord's ``change_state``), which checks it
against ``TRANSITIONS``, logs it, and persists what must outlive a restart
(a give-up). The table is the whole lifecycle at a glance::

    stopped ─▶ starting ─▶ running ─▶ hung ─▶ backoff ─▶ starting …
                  │           │         └───▶ crashed | gave_up
                  └───────────┴──▶ backoff | crashed | finished | gave_up
    any ─▶ paused ─▶ stopped (resume) ;  any with a process ─▶ stopped (stop)
"""

from __future__ import annotations

from collections.abc import Mapping

from supervisor.events import ProcessState

_LIVE: frozenset[ProcessState] = frozenset(
    {
        "starting",
        "running",
        "hung",
        "stopped",
        "paused",
        "backoff",
        "crashed",
        "finished",
        "gave_up",
    }
)

TRANSITIONS: Mapping[ProcessState, frozenset[ProcessState]] = {
    "stopped": frozenset({"starting", "paused"}),
    "starting": _LIVE - {"starting"},
    "running": _LIVE - {"running"},
    "hung": frozenset({"starting", "stopped", "paused", "backoff", "crashed", "gave_up"}),
    "backoff": frozenset({"starting", "stopped", "paused"}),
    "crashed": frozenset({"starting", "paused"}),
    "finished": frozenset({"starting", "paused"}),
    "gave_up": frozenset({"starting", "paused"}),
    "paused": frozenset({"stopped"}),
}


class BadTransition(RuntimeError):
    """A state change the machine does not allow: a bug in the supervisor, never input."""


def check_transition(name: str, old: ProcessState, new: ProcessState, why: str) -> None:
    if new != old and new not in TRANSITIONS[old]:
        raise BadTransition(f"{name}: {old} -> {new} is not a transition ({why})")
