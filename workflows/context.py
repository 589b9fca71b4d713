"""What a workflow's code sees while it runs: input, outputs, summaries, loops.

``Context`` is the author-facing half; ``RunEngine`` is the half that
replays checkpoints and runs task attempts. They are split so authors get a
small surface and the replay rules live in one place.
"""

from __future__ import annotations

import logging
import time
import traceback
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Literal, TypeVar

from workflows.checkpoints import CheckpointStore, StoredCall
from workflows.contract import Status
from workflows.current import CURRENT_TASK, TaskCall
from workflows.errors import CodePathChanged, LoopLimitReached, TaskFailed
from workflows.state import StateWriter
from workflows.tasks import Task

log = logging.getLogger("workflows")
T = TypeVar("T")


class Outputs(Mapping[str, list[Any]]):
    """Outputs of finished task calls so far in this run, by task id, oldest first.

    A task that has not finished yet maps to an empty list, so
    ``ctx.outputs["review"]`` needs no guard.
    """

    def __init__(self) -> None:
        self._by_task: defaultdict[str, list[Any]] = defaultdict(list)

    def __getitem__(self, task_id: str) -> list[Any]:
        return list(self._by_task.get(task_id, []))

    def __iter__(self) -> Iterator[str]:
        return iter(self._by_task)

    def __len__(self) -> int:
        return len(self._by_task)

    def latest(self, task_id: str) -> Any | None:
        """The most recent output of a task, or None."""
        found = self._by_task.get(task_id)
        return found[-1] if found else None

    def _append(self, task_id: str, value: Any) -> None:
        self._by_task[task_id].append(value)


def short_traceback(exc: BaseException, frames: int = 4) -> str:
    """The last few frames of a traceback: enough to find the line, short enough for a chat."""
    root = exc.cause if isinstance(exc, TaskFailed) else exc
    lines = traceback.format_exception(root, limit=-frames, chain=False)
    return "".join(lines).strip()


class RunEngine:
    """Replays recorded calls and runs the first unfinished one onward."""

    def __init__(
        self,
        store: CheckpointStore,
        state: StateWriter,
        run_id: str,
        sleep: Callable[[float], None],
    ) -> None:
        self.store = store
        self.state = state
        self.run_id = run_id
        self.sleep = sleep
        self.outputs = Outputs()
        self.executed = 0  # task attempts actually run in this process (not replayed)
        self._recorded: dict[int, StoredCall] = store.calls(run_id)
        self._next_index = 0
        self._occurrences: defaultdict[str, int] = defaultdict(int)

    def call(
        self, ctx: Context, task: Task[Any, Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        index = self._next_index
        self._next_index += 1
        occurrence = self._occurrences[task.id]
        self._occurrences[task.id] += 1
        recorded = self._recorded.get(index)
        if recorded is not None and recorded.status in ("done", "skipped"):
            if recorded.task_id != task.id:
                raise CodePathChanged(index, recorded.task_id, task.id)
            if recorded.status == "skipped":
                return None
            value = task.load(recorded.output)
            self.outputs._append(task.id, value)
            return value
        if task.skip_if is not None and task.skip_if(ctx, *args, **kwargs):
            self.store.begin_call(self.run_id, index, task.id, exists=recorded is not None)
            self.store.end_call(self.run_id, index, "skipped", attempted=False)
            log.info("task %s skipped", task.id)
            return None
        self.store.begin_call(self.run_id, index, task.id, exists=recorded is not None)
        value = self._attempts(
            ctx, task=task, index=index, occurrence=occurrence, args=args, kwargs=kwargs
        )
        self.outputs._append(task.id, value)
        return value

    def _attempts(
        self,
        ctx: Context,
        *,
        task: Task[Any, Any],
        index: int,
        occurrence: int,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Any:
        policy = task.retry
        for attempt in range(1, policy.attempts + 1):
            token = CURRENT_TASK.set(TaskCall(self.run_id, task.id, index, occurrence, attempt))
            started = time.monotonic()
            log.info("task %s started (attempt %d/%d)", task.id, attempt, policy.attempts)
            self.executed += 1
            try:
                result = task.invoke(ctx, args, kwargs)
                output = task.dump(result)
            except Exception as exc:
                error = f"{type(exc).__name__}: {exc}"
                log.warning(
                    "task %s attempt %d/%d failed: %s", task.id, attempt, policy.attempts, error
                )
                if attempt == policy.attempts:
                    self.store.end_call(self.run_id, index, "failed", error=short_traceback(exc))
                    raise TaskFailed(task.id, attempt, exc) from exc
                self.store.record_attempt(self.run_id, index, error)
                self.sleep(policy.delay(attempt))
                continue
            finally:
                CURRENT_TASK.reset(token)
            self.store.end_call(self.run_id, index, "done", output=output)
            log.info("task %s done in %.1fs", task.id, time.monotonic() - started)
            return task.load(output)
        raise AssertionError("unreachable: the last attempt returns or raises")


class Context:
    """Handed to ``main`` and to every task: the run's input, outputs and voice."""

    def __init__(
        self, *, workflow: str, run_id: str, input: dict[str, Any], resumed: bool, engine: RunEngine
    ) -> None:
        self.workflow = workflow
        self.run_id = run_id
        self.input = input
        self.resumed = resumed
        self._engine = engine

    @property
    def outputs(self) -> Outputs:
        return self._engine.outputs

    def summary(self, text: str) -> None:
        """Say in 1-3 sentences what the workflow is doing; shown in /status."""
        log.info("summary: %s", text)
        self._engine.state.summary(text)

    def status(self, status: Status) -> None:
        """Set ``supervisor.status`` yourself (the library sets running/done/error for you)."""
        self._engine.state.status(status)

    def error(self, text: str) -> None:
        """Record an error the humans should see now, without failing the run."""
        log.error("error: %s", text)
        self._engine.state.error(text)

    def loop(
        self,
        body: Callable[[int], T],
        *,
        until: Callable[[T], bool] | None = None,
        max_iterations: int,
        on_max_reached: Literal["return-last", "fail"] = "return-last",
        loop_id: str = "loop",
    ) -> T:
        """Run ``body(iteration)`` until ``until(result)`` holds, at most ``max_iterations`` times.

        The loop of the guide's Ralph pattern. Every task called in ``body`` is
        checkpointed, so a resumed run replays finished iterations from storage
        and continues inside the iteration it stopped in.
        """
        if max_iterations < 1:
            raise ValueError("max_iterations must be at least 1")
        for iteration in range(1, max_iterations + 1):
            last = body(iteration)
            if until is not None and until(last):
                return last
        if on_max_reached == "fail":
            raise LoopLimitReached(loop_id, max_iterations)
        log.info(
            "loop %s reached %d iterations; returning the last result", loop_id, max_iterations
        )
        return last
