"""Exceptions a workflow author may see, each saying what to do about it."""

from __future__ import annotations


class WorkflowError(Exception):
    """Base of the library's own errors."""


class TaskFailed(WorkflowError):
    """A task failed on every attempt; the run stops and can be resumed later."""

    def __init__(self, task_id: str, attempts: int, cause: BaseException) -> None:
        self.task_id = task_id
        self.attempts = attempts
        self.cause = cause
        tries = "attempt" if attempts == 1 else "attempts"
        super().__init__(
            f"task {task_id!r} failed after {attempts} {tries}: {type(cause).__name__}: {cause}"
        )


class TaskTimeout(WorkflowError):
    """One attempt of a task ran longer than its ``timeout``."""

    def __init__(self, task_id: str, timeout: float) -> None:
        super().__init__(f"task {task_id!r} timed out after {timeout:g}s")


class CodePathChanged(WorkflowError):
    """A resumed run reached a different task where a finished one was recorded."""

    def __init__(self, call_index: int, stored_task: str, new_task: str) -> None:
        super().__init__(
            f"call #{call_index} of this run was task {stored_task!r} but the code now calls "
            f"{new_task!r} there; the workflow changed under a running run. "
            "Start over with --new-run, or restore the code the run started with."
        )


class LoopLimitReached(WorkflowError):
    """A loop with ``on_max_reached="fail"`` ran out of iterations."""

    def __init__(self, loop_id: str, max_iterations: int) -> None:
        super().__init__(f"loop {loop_id!r} did not finish within {max_iterations} iterations")


class WorkflowInterrupted(BaseException):
    """Raised in the main thread on SIGTERM; a BaseException so tasks don't swallow it."""
