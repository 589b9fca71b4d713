"""Tasks: the checkpointed unit of work, with retries, backoff, a timeout and skip_if.

A ``Task`` is what ``@wf.task`` turns a function into. Calling it with the
context first (``research(ctx)``) goes through the run's checkpoints; the
function itself only runs when no finished call is recorded at that point.
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, TypeVar, get_type_hints

from pydantic import TypeAdapter

from workflows.errors import TaskTimeout

if TYPE_CHECKING:
    from workflows.context import Context

P = ParamSpec("P")
R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """``retries`` extra attempts; the wait doubles from ``backoff`` up to ``max_backoff``."""

    retries: int = 0
    backoff: float = 1.0
    max_backoff: float = 60.0

    @property
    def attempts(self) -> int:
        return self.retries + 1

    def delay(self, failed_attempt: int) -> float:
        """Seconds to wait after attempt number ``failed_attempt`` (1-based) failed."""
        return float(min(self.backoff * 2 ** (failed_attempt - 1), self.max_backoff))


class Task(Generic[P, R]):
    """A checkpointed function of a workflow; call it as ``task(ctx, *args)``."""

    def __init__(
        self,
        fn: Callable[..., R],
        *,
        task_id: str,
        retry: RetryPolicy,
        timeout: float | None,
        skip_if: Callable[..., bool] | None,
    ) -> None:
        self.fn = fn
        self.id = task_id
        self.retry = retry
        self.timeout = timeout
        self.skip_if = skip_if
        self.__doc__ = fn.__doc__
        self.__name__ = getattr(fn, "__name__", task_id)
        return_type = get_type_hints(fn).get("return", Any)
        self.adapter: TypeAdapter[Any] = TypeAdapter(return_type)

    def __call__(self, ctx: Context, *args: Any, **kwargs: Any) -> R:
        result: R = ctx._engine.call(ctx, self, args, kwargs)
        return result

    def dump(self, value: Any) -> str:
        """Validate a result against the return annotation and serialise it."""
        validated = self.adapter.validate_python(value)
        return self.adapter.dump_json(validated).decode()

    def load(self, stored: str | None) -> Any:
        return self.adapter.validate_json(stored or "null")

    def invoke(self, ctx: Context, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """Run the function once, in a watched thread when a timeout is set."""
        if self.timeout is None:
            return self.fn(ctx, *args, **kwargs)
        return _run_with_timeout(lambda: self.fn(ctx, *args, **kwargs), self.id, self.timeout)


def _run_with_timeout(work: Callable[[], Any], task_id: str, timeout: float) -> Any:
    """Run ``work`` in a daemon thread and give up waiting after ``timeout``.

    Python cannot kill a thread: an attempt that times out is abandoned (it
    runs on in the background until it returns). The waiting is done with a
    timed join so SIGTERM still interrupts the main thread.
    """
    outcome: dict[str, Any] = {}
    context = contextvars.copy_context()

    def target() -> None:
        try:
            outcome["value"] = context.run(work)
        except BaseException as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=target, name=f"task-{task_id}", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise TaskTimeout(task_id, timeout)
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("value")
