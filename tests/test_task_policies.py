"""Retries with backoff, timeouts, skip_if and capped loops, as an author relies on them.

In-process runs over a real SQLite file; ``sleep`` is injected so backoff
costs nothing and its delays can be read back.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from workflows import Context, RunResult, Workflow
from workflows.contract import LAST_ERROR_KEY, STATUS_KEY


def _no_sleep(_seconds: float) -> None:
    """Backoff that takes no time."""


def _run(wf: Workflow, db: Path) -> RunResult:
    return wf.run(db=db, sleep=_no_sleep)


def _query(db: Path, sql: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(db) as conn:
        return conn.execute(sql).fetchall()


def _state(db: Path, key: str) -> str:
    [(value,)] = _query(db, f"SELECT value FROM state WHERE key = '{key}'")
    return str(value)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "policies.db"


def test_task_that_fails_twice_succeeds_with_two_retries(db: Path) -> None:
    wf = Workflow("retries")
    tries: list[int] = []

    @wf.task(retries=2)
    def flaky(ctx: Context) -> int:
        tries.append(1)
        if len(tries) < 3:
            raise RuntimeError("not yet")
        return 7

    @wf.main
    def main(ctx: Context) -> None:
        assert flaky(ctx) == 7

    result = _run(wf, db)

    assert (result.outcome, result.executed) == ("done", 3)
    assert _query(db, "SELECT task_id, status, attempts FROM task_calls") == [("flaky", "done", 3)]


def test_task_out_of_retries_fails_the_run_with_a_traceback(db: Path) -> None:
    wf = Workflow("retries")

    @wf.task(retries=1)
    def doomed(ctx: Context) -> int:
        raise ValueError("the disk is full")

    @wf.main
    def main(ctx: Context) -> None:
        doomed(ctx)

    result = _run(wf, db)

    assert (result.outcome, result.exit_code, result.executed) == ("failed", 1, 2)
    assert _state(db, STATUS_KEY) == "error"
    error = _state(db, LAST_ERROR_KEY)
    assert "'doomed'" in error
    assert "ValueError: the disk is full" in error
    assert 'test_task_policies.py", line' in error
    assert _query(db, "SELECT status, attempts FROM task_calls") == [("failed", 2)]
    assert _query(db, "SELECT status FROM workflow_runs") == [("failed",)]


def test_backoff_doubles_up_to_max_backoff(db: Path) -> None:
    wf = Workflow("backoff")
    delays: list[float] = []

    @wf.task(retries=4, backoff=1.0, max_backoff=3.0)
    def doomed(ctx: Context) -> int:
        raise RuntimeError("no")

    @wf.main
    def main(ctx: Context) -> None:
        doomed(ctx)

    assert wf.run(db=db, sleep=delays.append).outcome == "failed"
    assert delays == [1.0, 2.0, 3.0, 3.0]


def test_timeout_stops_waiting_for_a_slow_task(db: Path) -> None:
    wf = Workflow("timeout")
    release = threading.Event()

    @wf.task(timeout=0.2)
    def slow(ctx: Context) -> int:
        release.wait(5)
        return 1

    @wf.main
    def main(ctx: Context) -> None:
        slow(ctx)

    started = time.monotonic()
    try:
        result = _run(wf, db)
    finally:
        release.set()

    assert time.monotonic() - started < 1.5
    assert result.outcome == "failed"
    assert "TaskTimeout" in (result.error or "")
    assert "'slow' timed out after 0.2s" in (result.error or "")


def test_skipped_call_returns_none_and_stays_skipped_on_replay(db: Path) -> None:
    wf = Workflow("skip")
    gate = {"closed": True, "fail": True}
    ran: list[str] = []

    @wf.task(skip_if=lambda ctx: gate["closed"])
    def gated(ctx: Context) -> str:
        ran.append("gated")
        return "opened"

    @wf.task
    def after(ctx: Context) -> str:
        if gate["fail"]:
            raise RuntimeError("fail once")
        return "after"

    seen: list[str | None] = []

    @wf.main
    def main(ctx: Context) -> None:
        seen.append(gated(ctx))
        after(ctx)

    first = _run(wf, db)
    gate.update(closed=False, fail=False)
    second = _run(wf, db)

    assert (first.outcome, second.outcome) == ("failed", "done")
    assert second.resumed
    assert second.run_id == first.run_id
    assert seen == [None, None]
    assert ran == []
    assert _query(db, "SELECT task_id, status FROM task_calls ORDER BY call_index") == [
        ("gated", "skipped"),
        ("after", "done"),
    ]


def _counting_loop(
    *, until_at: int | None, max_iterations: int, on_max: str
) -> tuple[Workflow, list[int], list[int]]:
    wf = Workflow("loop")
    executed: list[int] = []
    returned: list[int] = []

    @wf.task
    def step(ctx: Context, iteration: int) -> int:
        executed.append(iteration)
        return iteration

    @wf.main
    def main(ctx: Context) -> None:
        last = ctx.loop(
            lambda i: step(ctx, i),
            until=None if until_at is None else (lambda value: value >= until_at),
            max_iterations=max_iterations,
            on_max_reached="fail" if on_max == "fail" else "return-last",
            loop_id="steps",
        )
        returned.append(last)

    return wf, executed, returned


def test_loop_stops_when_until_holds(db: Path) -> None:
    wf, executed, returned = _counting_loop(until_at=3, max_iterations=10, on_max="return-last")
    assert _run(wf, db).outcome == "done"
    assert (executed, returned) == ([1, 2, 3], [3])


def test_loop_cap_returns_the_last_result(db: Path) -> None:
    wf, executed, returned = _counting_loop(until_at=None, max_iterations=4, on_max="return-last")
    assert _run(wf, db).outcome == "done"
    assert (executed, returned) == ([1, 2, 3, 4], [4])


def test_loop_cap_with_fail_fails_the_run(db: Path) -> None:
    wf, executed, returned = _counting_loop(until_at=99, max_iterations=3, on_max="fail")
    result = _run(wf, db)
    assert result.outcome == "failed"
    assert "LoopLimitReached" in (result.error or "")
    assert "loop 'steps' did not finish within 3 iterations" in _state(db, LAST_ERROR_KEY)
    assert (executed, returned) == ([1, 2, 3], [])


def test_resumed_loop_replays_finished_iterations(db: Path) -> None:
    wf = Workflow("loop")
    effects: Counter[int] = Counter()
    broken = {"iteration": 3}

    @wf.task
    def work(ctx: Context, iteration: int) -> int:
        effects[iteration] += 1
        if iteration == broken["iteration"]:
            raise RuntimeError("crash inside the loop")
        return iteration

    @wf.main
    def main(ctx: Context) -> None:
        ctx.loop(lambda i: work(ctx, i), until=lambda value: value >= 4, max_iterations=10)

    first = _run(wf, db)
    broken["iteration"] = 0
    second = _run(wf, db)

    assert (first.outcome, second.outcome) == ("failed", "done")
    assert second.run_id == first.run_id
    assert effects == {1: 1, 2: 1, 3: 2, 4: 1}
    assert second.executed == 2
