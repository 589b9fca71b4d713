"""How fast the supervisor notices crashes, errors and hangs, and what watching costs it.

Runs a real ``Supervisor`` in this process over 1, 20 and 100 small Python
workflows that write their state table with ``sqlite3``, and prints each
figure beside its goal (no asserts: the numbers are for people). The
supervisor uses its production poll period; only the hang check is set to
1 s so that the hang figure is measured in reasonable time.

The error event is measured twice: as the supervisor runs, watching the state
files (``supervisor/statewatch.py``: the write is read within milliseconds),
and with the watch refused (as where inotify is missing or used up), when only
the ``error_poll_seconds`` poll notices it.

    python bench/detection_latency.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil

from supervisor import statewatch
from supervisor.config import load_config
from supervisor.core import Supervisor
from supervisor.events import Crashed, ErrorReported, Event, Hung
from supervisor.settings import SupervisorSettings
from workflows import contract

WORKER = r"""
import importlib.util, json, os, random, sqlite3, sys, time
plan = json.loads(sys.argv[1])
# contract.py alone, not the whole ``workflows`` package: start-up must stay well under 1 s.
spec = importlib.util.spec_from_file_location("contract", plan["contract"])
contract = importlib.util.module_from_spec(spec)
spec.loader.exec_module(contract)
HEARTBEAT_KEY, LAST_ERROR_KEY = contract.HEARTBEAT_KEY, contract.LAST_ERROR_KEY
STATE_TABLE_DDL, UPSERT_STATE_SQL = contract.STATE_TABLE_DDL, contract.UPSERT_STATE_SQL
STATUS_KEY, format_timestamp = contract.STATUS_KEY, contract.format_timestamp
db = sqlite3.connect(os.environ["WORKFLOW_DB"], timeout=5, isolation_level=None)
db.execute("PRAGMA journal_mode=WAL")
db.execute(STATE_TABLE_DDL)
put = lambda key, value: db.execute(UPSERT_STATE_SQL, (key, value))
beat = lambda: put(HEARTBEAT_KEY, format_timestamp())
put(STATUS_KEY, "running")
every = plan.get("every", 0.2)
while not os.path.exists(plan["go"]):  # measure the steady state, not the start-up storm
    beat()
    time.sleep(every * random.uniform(0.8, 1.2))
time.sleep(random.uniform(0, 2))
if plan.get("mode") == "crash":
    print("exit at", repr(time.time()), flush=True)
    os._exit(1)  # as a crash does: no clean close (whose WAL checkpoint would fsync for long)
if plan.get("mode") == "hang":
    beat()
    time.sleep(3600)
for _ in range(plan.get("errors", 0)):
    beat()
    put(LAST_ERROR_KEY, f"t={time.time()!r}")
    time.sleep(random.uniform(0.3, 0.8))
while True:
    beat()
    time.sleep(every * random.uniform(0.8, 1.2))
"""

GOALS = {
    "crash": 0.5,
    "error_p99": 0.1,  # watched
    "error_p99_polled": 1.5,  # no watch: the 0.5 s poll
    "hung_late": 1.0 + 0.5,
    "cpu": 3.0,
    "rss": 150.0,
}


@contextlib.contextmanager
def no_watch() -> Iterator[None]:
    """The supervisors built meanwhile get no inotify, as on a system that has none."""

    def refuse() -> tuple[object, int]:
        raise OSError(errno.ENOSYS, "watching disabled by the bench")

    real = statewatch.open_inotify
    statewatch.open_inotify = refuse  # type: ignore[assignment]
    try:
        yield
    finally:
        statewatch.open_inotify = real


def build(root: Path, count: int, plan: dict[str, Any], **keys: Any) -> Supervisor:
    """A supervisor over ``count`` copies of the worker with ``plan``."""
    worker = root / "worker.py"
    worker.write_text(WORKER, encoding="utf-8")
    plan = {**plan, "go": str(root / "go"), "contract": contract.__file__}
    tables = []
    for index in range(count):
        fields = {
            "name": f"w{index}",
            "command": [sys.executable, str(worker), json.dumps(plan)],
            "db": f"w{index}.db",
            "restart": "never",
            **keys,
        }
        tables.append(
            "[[workflows]]\n" + "\n".join(f"{k} = {json.dumps(v)}" for k, v in fields.items())
        )
    config = root / "supervisor.toml"
    config.write_text("\n\n".join(tables) + "\n", encoding="utf-8")
    settings = SupervisorSettings(
        data_dir=root / "data",
        check_interval_seconds=1.0,
        stop_grace_seconds=2,
        status_interval_seconds=0,
    )
    return Supervisor(settings, load_config(config, settings))


async def gather_events(
    supervisor: Supervisor, root: Path, kind: str, wanted: int, limit: float
) -> list[Event]:
    """Start, let the workers settle, say go; collect ``wanted`` events of ``kind`` after it."""
    subscription = supervisor.events()
    seen: list[Event] = []
    started = time.monotonic()
    await supervisor.startup()
    line("start-up", f"{time.monotonic() - started:.2f}s for {len(supervisor.names)}", "-")
    await asyncio.sleep(1)
    go = datetime.now(UTC)
    (root / "go").touch()

    async def collect() -> None:
        async for event in subscription:
            if event.kind == kind and event.time >= go:
                seen.append(event)
                if len(seen) >= wanted:
                    return

    try:
        await asyncio.wait_for(collect(), limit)
    except TimeoutError:
        pass
    finally:
        await supervisor.shutdown()
    return seen


def summary(values: Sequence[float]) -> str:
    if not values:
        return "no samples"
    ordered = sorted(values)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return (
        f"p50 {statistics.median(ordered):.3f}s  p99 {p99:.3f}s  "
        f"max {ordered[-1]:.3f}s  (n={len(ordered)})"
    )


def line(label: str, figures: str, goal: str) -> None:
    print(f"  {label:<28} {figures:<52} goal: {goal}", flush=True)


async def crash_latency(count: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        supervisor = build(Path(tmp), count, {"mode": "crash"})
        events = await gather_events(supervisor, Path(tmp), "crashed", count, 10)
    latencies = []
    for event in events:
        assert isinstance(event, Crashed)
        exits = [float(text.split()[-1]) for text in event.log_tail if text.startswith("exit at")]
        if exits:
            latencies.append(event.time.timestamp() - exits[-1])
    line("crash event after exit", summary(latencies), f"< {GOALS['crash']}s")


async def error_latency(count: int, *, watched: bool = True) -> None:
    per_workflow = 5
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        if not watched:
            stack.enter_context(no_watch())
        supervisor = build(Path(tmp), count, {"errors": per_workflow})
        events = await gather_events(supervisor, Path(tmp), "error", count * per_workflow, 10)
    latencies = [
        event.time.timestamp() - float(event.text.removeprefix("t="))
        for event in events
        if isinstance(event, ErrorReported)
    ]
    if watched:
        line("error event after write", summary(latencies), f"p99 < {GOALS['error_p99']}s")
    else:
        goal = f"p99 < {GOALS['error_p99_polled']}s"
        line("  the same, polled (no watch)", summary(latencies), goal)


async def hang_lateness(count: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        supervisor = build(Path(tmp), count, {"mode": "hang"}, hang_threshold_seconds=1)
        events = await gather_events(supervisor, Path(tmp), "hung", count, 10)
    late = [
        event.heartbeat_age - event.threshold
        for event in events
        if isinstance(event, Hung) and event.heartbeat_age is not None
    ]
    line("hung lateness past threshold", summary(late), f"< {GOALS['hung_late']}s (check 1s)")


async def idle_cost(count: int, seconds: float) -> None:
    me = psutil.Process()
    with tempfile.TemporaryDirectory() as tmp:
        supervisor = build(Path(tmp), count, {"every": 1.0})  # never told to go: idle
        await supervisor.startup()
        try:
            await asyncio.sleep(3)  # let every worker start and settle
            before, started = me.cpu_times(), time.monotonic()
            rss = 0
            for _ in range(int(seconds)):
                await asyncio.sleep(1)
                rss = max(rss, me.memory_info().rss)
            after, elapsed = me.cpu_times(), time.monotonic() - started
        finally:
            await supervisor.shutdown()
    used = (after.user - before.user) + (after.system - before.system)
    line(f"own CPU, {count} idle workflows", f"{100 * used / elapsed:.2f}% of a core", "< 3%")
    line(f"own RSS, {count} idle workflows", f"{rss / 2**20:.1f} MB", "< 150 MB")


async def main(quick: bool) -> None:
    sizes = (1, 20) if quick else (1, 20, 100)
    for count in sizes:
        print(f"{count} workflow(s):", flush=True)
        await crash_latency(count)
        await error_latency(count)
        await error_latency(count, watched=False)
        await hang_lateness(count)
    print("cost of watching:", flush=True)
    await idle_cost(sizes[-1] if quick else 100, 3 if quick else 10)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer workflows, shorter windows")
    asyncio.run(main(parser.parse_args().quick))
