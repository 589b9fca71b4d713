"""``/chart`` on a big history: 7 days of 100 workflows, from the control DB to the PNG.

A temporary SQLite control DB gets a week of synthetic events (most workflows
healthy with a reload a day, a fifth flaky with a crash every two hours, a few
crash-looping every ten minutes and hanging daily, all of them writing error
and status events the charts must skip) and a week of heartbeat samples (one a
minute per workflow, as ``bot.observe.heartbeats`` keeps them). Then the path
``/chart`` takes, ``bot.observe.pictures.Charts``: read the events (and the
samples) in a thread, derive the bands, render the PNG in a thread. Measured:
the fleet chart over 24 h and over 7 days, and one workflow's 7-day chart (the
crash-looping one, the most events). The first render of a process also pays
for importing matplotlib and loading its fonts: it is shown on its own. Goal:
every chart under 2 s. Prints figures; asserts nothing.

    python bench/chart_render.py [--workflows 100] [--days 7] [--samples 5]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bot.observe.heartbeats import HeartbeatStore  # noqa: E402
from bot.observe.heartbeats import samples as sample_table  # noqa: E402
from bot.observe.pictures import Charts  # noqa: E402
from bot.transport import Document  # noqa: E402
from supervisor.control import ControlDB, events  # noqa: E402

GOAL_SECONDS = 2.0
END = datetime(2026, 1, 12, 12, 0, tzinfo=UTC)


def script(name: str, kind: str, start: datetime, rng: random.Random) -> list[tuple[datetime, str]]:
    """(time, kind) of one workflow's events from ``start`` to ``END``."""
    out: list[tuple[datetime, str]] = [(start - timedelta(hours=1), "started")]
    moment = start
    if kind == "healthy":
        while (moment := moment + timedelta(hours=24 + rng.uniform(-2, 2))) < END:
            out += [(moment, "reloaded"), (moment, "started"), (moment, "restarted")]
            out += [(moment + timedelta(seconds=5), "status")]
        return out
    every = timedelta(hours=2) if kind == "flaky" else timedelta(minutes=10)
    day = start.date()
    while (moment := moment + every * rng.uniform(0.5, 1.5)) < END:
        out += [(moment, "crashed"), (moment, "error"), (moment, "error")]
        back = moment + timedelta(seconds=rng.uniform(5, 120))
        out += [(back, "started"), (back, "restarted"), (back, "status")]
        if kind == "looping" and moment.date() != day:  # a hang, and a pause, once a day
            day = moment.date()
            hung = moment + timedelta(minutes=3)
            out += [(hung, "hung"), (hung + timedelta(minutes=2), "restarted")]
            out += [(hung + timedelta(minutes=4), "paused"), (hung + timedelta(hours=1), "resumed")]
    return out


def fill(url: str, names: list[str], days: int) -> tuple[int, int]:
    """Write the events and the heartbeat samples; how many of each."""
    rng = random.Random(7)
    start = END - timedelta(days=days)
    scripted: list[tuple[datetime, str, str]] = []
    for index, name in enumerate(names):
        kind = "looping" if index % 20 == 0 else "flaky" if index % 5 == 0 else "healthy"
        scripted += [(moment, name, kind) for moment, kind in script(name, kind, start, rng)]
    scripted.sort()  # ids in time order, as the supervisor writes them
    rows = [
        {"time": moment, "workflow": name, "kind": kind, "detail": "synthetic"}
        for moment, name, kind in scripted
    ]
    control = ControlDB(url)
    with control.engine.begin() as conn:
        conn.execute(sa.insert(events), rows)
    store = HeartbeatStore(control.engine)
    store.write(start.timestamp(), [])  # creates the table
    beats = 0
    first, last = int(start.timestamp()), int(END.timestamp())
    with control.engine.begin() as conn:
        for name in names:
            ages = [
                {"workflow": name, "time": float(moment), "age": rng.uniform(1, 30)}
                for moment in range(first, last, 60)
            ]
            conn.execute(sa.insert(sample_table), ages)
            beats += len(ages)
    control.close()
    return len(rows), beats


def timed(runs: int, make: Callable[[], Coroutine[Any, Any, Document]]) -> tuple[list[float], int]:
    """Seconds of each of ``runs`` calls of the coroutine function ``make``; the PNG's size."""
    seconds: list[float] = []
    size = 0
    for _ in range(runs):
        begun = time.perf_counter()
        picture = asyncio.run(make())
        seconds.append(time.perf_counter() - begun)
        size = len(picture.data)
    return seconds, size


def line(label: str, seconds: list[float], size: int) -> str:
    p50, worst = statistics.median(seconds), max(seconds)
    verdict = "ok" if worst < GOAL_SECONDS else "OVER THE GOAL"
    return (
        f"{label:<34} p50 {p50 * 1000:7.0f} ms   max {worst * 1000:7.0f} ms   "
        f"PNG {size / 1024:5.0f} KB   {verdict} (goal < {GOAL_SECONDS:g} s)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workflows", type=int, default=100)
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--samples", type=int, default=5)
    args = parser.parse_args()
    names = [f"workflow-{index:03d}" for index in range(args.workflows)]
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'control.db'}"
        begun = time.perf_counter()
        count, beats = fill(url, names, args.days)
        print(
            f"{args.workflows} workflows, {args.days} days: {count:,} events, {beats:,} "
            f"heartbeat samples (written in {time.perf_counter() - begun:.1f} s)"
        )
        engine = sa.create_engine(url)
        charts = Charts(engine, lambda: names, clock=lambda: END)
        looping = names[0]
        cold, _ = timed(1, lambda: charts.workflow(looping, "24h"))
        print(f"{'first chart (imports matplotlib)':<34} {cold[0] * 1000:7.0f} ms")
        runs = args.samples
        print(line("fleet chart, 24 h", *timed(runs, lambda: charts.fleet("24h"))))
        print(line("fleet chart, 7 days", *timed(runs, lambda: charts.fleet("7d"))))
        print(
            line(
                f"{looping} (looping), 7 days", *timed(runs, lambda: charts.workflow(looping, "7d"))
            )
        )
        healthy = names[1]
        print(
            line(
                f"{healthy} (healthy), 7 days", *timed(runs, lambda: charts.workflow(healthy, "7d"))
            )
        )
        engine.dispose()


if __name__ == "__main__":
    main()
