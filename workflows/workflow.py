"""``Workflow``: where tasks and ``main`` are declared, and where a run is driven.

A run owns the state contract from start to end: ``running`` and a first
heartbeat before any task, a heartbeat thread throughout, its agents' usage
after every response (``workflows.usage``), ``done`` on a clean finish,
``error`` with ``supervisor.last_error`` on a failure, and on SIGTERM an
orderly stop that leaves the run resumable.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any, Literal, ParamSpec, TypeVar, overload

from sqlalchemy.exc import SQLAlchemyError

from workflows.checkpoints import CheckpointStore
from workflows.context import Context, RunEngine, short_traceback
from workflows.errors import WorkflowError, WorkflowInterrupted
from workflows.state import Heartbeat, StateWriter
from workflows.tasks import RetryPolicy, Task
from workflows.usage import UsageMeter, metering

log = logging.getLogger("workflows")
P = ParamSpec("P")
R = TypeVar("R")
DEFAULT_HEARTBEAT_SECONDS = 30.0
EXIT_FAILED = 1
EXIT_INTERRUPTED = 143  # 128 + SIGTERM, what a shell reports for a TERM'd process

Outcome = Literal["done", "failed", "interrupted"]


@dataclass(frozen=True, slots=True)
class RunResult:
    run_id: str
    outcome: Outcome
    resumed: bool
    executed: int  # task attempts run by this process; replayed calls are not counted
    error: str | None = None

    @property
    def exit_code(self) -> int:
        return {"done": 0, "failed": EXIT_FAILED, "interrupted": EXIT_INTERRUPTED}[self.outcome]


def default_db_path(name: str) -> Path:
    """``WORKFLOW_DB`` from the environment, else ``.smithers/<name>.db`` as the guide lays out."""
    return Path(os.environ.get("WORKFLOW_DB") or Path(".smithers") / f"{name}.db")


def heartbeat_seconds() -> float:
    return float(os.environ.get("WORKFLOW_HEARTBEAT_SECONDS") or DEFAULT_HEARTBEAT_SECONDS)


@contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """Turn SIGTERM into ``WorkflowInterrupted`` in the main thread for the run's duration."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(_signum: int, _frame: FrameType | None) -> None:
        # A second TERM (systemd and the supervisor both asking) must not break the orderly stop.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise WorkflowInterrupted("SIGTERM")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class Workflow:
    """A named workflow: declare tasks with ``@wf.task`` and the flow with ``@wf.main``."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.tasks: dict[str, Task[Any, Any]] = {}
        self._main: Callable[[Context], object] | None = None

    @overload
    def task(self, fn: Callable[P, R], /) -> Task[P, R]: ...

    @overload
    def task(
        self,
        fn: None = None,
        /,
        *,
        id: str | None = None,
        retries: int = 0,
        backoff: float = 1.0,
        max_backoff: float = 60.0,
        timeout: float | None = None,
        skip_if: Callable[..., bool] | None = None,
    ) -> Callable[[Callable[P, R]], Task[P, R]]: ...

    def task(
        self,
        fn: Callable[P, R] | None = None,
        /,
        *,
        id: str | None = None,
        retries: int = 0,
        backoff: float = 1.0,
        max_backoff: float = 60.0,
        timeout: float | None = None,
        skip_if: Callable[..., bool] | None = None,
    ) -> Task[P, R] | Callable[[Callable[P, R]], Task[P, R]]:
        """Declare a checkpointed task: ``retries`` extra attempts, ``timeout`` seconds per attempt,
        ``skip_if(ctx, *args)`` to skip a call (it then returns None)."""

        def declare(function: Callable[P, R]) -> Task[P, R]:
            task_id = id or function.__name__.replace("_", "-")
            if task_id in self.tasks:
                raise ValueError(f"workflow {self.name!r} already has a task {task_id!r}")
            policy = RetryPolicy(retries=retries, backoff=backoff, max_backoff=max_backoff)
            declared: Task[P, R] = Task(
                function, task_id=task_id, retry=policy, timeout=timeout, skip_if=skip_if
            )
            self.tasks[task_id] = declared
            return declared

        return declare(fn) if fn is not None else declare

    def main(self, fn: Callable[[Context], R]) -> Callable[[Context], R]:
        """Declare the function that drives the run; it receives the ``Context``."""
        self._main = fn
        return fn

    def run(
        self,
        input: dict[str, Any] | None = None,
        *,
        db: Path | str | None = None,
        new_run: bool = False,
        sleep: Callable[[float], None] = time.sleep,
    ) -> RunResult:
        """Run (or resume) the workflow to its end; blocking. Never raises for a task failure."""
        if self._main is None:
            raise RuntimeError(f"workflow {self.name!r} has no @main function")
        path = Path(db) if db is not None else default_db_path(self.name)
        data = input or {}
        state = StateWriter(path)
        try:
            store = CheckpointStore(path)
            run_id, resumed = store.open_run(
                self.name, json.dumps(data, sort_keys=True), new_run=new_run
            )
        except SQLAlchemyError as exc:
            state.close()
            raise WorkflowError(
                f"workflow database {path} is unusable ({getattr(exc, 'orig', None) or exc}); "
                "move it aside or pass another --db"
            ) from exc
        engine = RunEngine(store, state, run_id, sleep)
        ctx = Context(workflow=self.name, run_id=run_id, input=data, resumed=resumed, engine=engine)
        heartbeat = Heartbeat(path, heartbeat_seconds())
        state.status("running")
        state.summary(f"resuming run {run_id}" if resumed else f"starting run {run_id}")
        meter = UsageMeter.for_run(state, resumed=resumed)
        heartbeat.start()
        log.info(
            "%s run %s %s (db %s)", self.name, run_id, "resumed" if resumed else "started", path
        )
        try:
            with _sigterm_interrupts(), metering(meter):
                outcome, error = self._drive(ctx, state)
        finally:
            heartbeat.stop()
        store.finish_run(run_id, outcome)
        store.close()
        state.close()
        failures = state.failures + heartbeat.failures
        if failures:
            log.warning("%d state writes failed during this run", failures)
        return RunResult(run_id, outcome, resumed, engine.executed, error)

    def _drive(self, ctx: Context, state: StateWriter) -> tuple[Outcome, str | None]:
        assert self._main is not None
        try:
            self._main(ctx)
        except (WorkflowInterrupted, KeyboardInterrupt):
            log.warning("interrupted; the run resumes from the unfinished task on the next start")
            state.status("idle")
            state.summary(
                "Stopped by a signal; resumes from the unfinished task on the next start."
            )
            return "interrupted", None
        except Exception as exc:
            error = f"{self.name}: {exc}\n{short_traceback(exc)}"
            log.error("run failed: %s", error)
            state.error(error)
            state.status("error")
            return "failed", error
        state.status("done")
        return "done", None
