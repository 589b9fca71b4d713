"""Which task call is running right now, for code deep inside a task.

Agents use it to label requests and the offline ``ScriptedAgent`` to pick the
prepared output for the task; it is a context variable so threads started by
the engine (task timeouts) see the right call.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class TaskCall:
    """One call of a task within a run."""

    run_id: str
    task_id: str
    call_index: int  # position of this call among all task calls of the run
    occurrence: int  # how many earlier calls of the same task the run made
    attempt: int  # 1 for the first try, 2 for the first retry, ...


CURRENT_TASK: ContextVar[TaskCall | None] = ContextVar("current_task", default=None)


def current_task() -> TaskCall | None:
    """The task call being executed, or ``None`` outside any task."""
    return CURRENT_TASK.get()
