"""What durability costs: checkpoint overhead per task call, and state-write latency under load.

A workflow pays a checkpoint per task call and a state write per summary and
heartbeat; both must stay small next to an agent call (seconds), and state
writes must stay fast while other workflows write too, or heartbeats lag.
Prints figures beside their goals; asserts nothing.

    python bench/task_overhead.py
"""

from __future__ import annotations

import multiprocessing
import statistics
import tempfile
import time
from pathlib import Path

from workflows import Context, Workflow
from workflows.state import StateWriter

TASK_CALLS = 2000
WRITERS = 4
WRITES_PER_WRITER = 500
GOAL_CALL_P50_MS = 2.0
GOAL_WRITE_P99_MS = 20.0


def _percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def checkpoint_overhead(directory: Path) -> list[float]:
    """Milliseconds per trivial task call, timed from inside ``main``."""
    wf = Workflow("bench")
    timings: list[float] = []

    @wf.task
    def trivial(ctx: Context, number: int) -> int:
        return number

    @wf.main
    def main(ctx: Context) -> None:
        for number in range(TASK_CALLS):
            started = time.perf_counter()
            trivial(ctx, number)
            timings.append((time.perf_counter() - started) * 1000)

    result = wf.run(db=directory / "calls.db")
    if result.outcome != "done":
        raise RuntimeError(f"benchmark workflow did not finish: {result.error}")
    return timings


def _write_many(db: str, writer_id: int) -> list[float]:
    writer = StateWriter(Path(db))
    timings: list[float] = []
    for number in range(WRITES_PER_WRITER):
        started = time.perf_counter()
        writer.summary(f"writer {writer_id} step {number}")
        timings.append((time.perf_counter() - started) * 1000)
    writer.close()
    return timings


def concurrent_writes(dbs: list[Path]) -> list[float]:
    """Milliseconds per ``StateWriter.set``, ``WRITERS`` processes writing at once."""
    with multiprocessing.get_context("spawn").Pool(WRITERS) as pool:
        per_writer = pool.starmap(_write_many, [(str(db), n) for n, db in enumerate(dbs)])
    return [sample for samples in per_writer for sample in samples]


def _row(label: str, samples: list[float], goal: str) -> str:
    p50, p99 = _percentile(samples, 0.5), _percentile(samples, 0.99)
    mean = statistics.fmean(samples)
    return f"{label:<44} {len(samples):>6} {p50:>8.3f} {p99:>8.3f} {mean:>8.3f}   {goal}"


def main() -> None:
    with tempfile.TemporaryDirectory() as scratch:
        directory = Path(scratch)
        calls = checkpoint_overhead(directory)
        own = concurrent_writes([directory / f"own-{n}.db" for n in range(WRITERS)])
        shared = concurrent_writes([directory / "shared.db"] * WRITERS)
    print(f"{'measurement':<44} {'n':>6} {'p50 ms':>8} {'p99 ms':>8} {'mean ms':>8}   goal")
    print("-" * 100)
    print(_row("checkpointed task call (in-process)", calls, f"p50 < {GOAL_CALL_P50_MS:g} ms"))
    print(
        _row(
            f"state write, {WRITERS} processes, own db each", own, f"p99 < {GOAL_WRITE_P99_MS:g} ms"
        )
    )
    print(
        _row(
            f"state write, {WRITERS} processes, one shared db",
            shared,
            f"p99 < {GOAL_WRITE_P99_MS:g} ms",
        )
    )


if __name__ == "__main__":
    main()
