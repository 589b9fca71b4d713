"""Heartbeat age over time: a light sampler, since nothing else keeps it.

A workflow's heartbeat is one value in its own state table, overwritten every
few seconds; the control DB's events say only when it went missing (a hang).
For the chart's heartbeat line the bot samples, once a minute, the heartbeat
age of each of this node's workflows whose process is live (``starting``,
``running``, ``hung``) into ``bot_heartbeat_samples``, and forgets samples
older than ``KEEP_DAYS``. About 1 440 rows a day per workflow, written in one
transaction a minute, off the event loop.

What the line shows is therefore the age at each minute, not the saw-tooth
between two heartbeats: a healthy workflow sits near its heartbeat period, a
hang rises until it is ended. Where there is no sample (no live process, the
bot down, the first minute after it starts) the line has a gap. In a fleet
each node's bot samples its own workflows; a headless node's are not sampled.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence

import sqlalchemy as sa

from supervisor.cancelling import cancel
from supervisor.dbengine import create_tables
from supervisor.events import LIVE_STATES, WorkflowStatus

log = logging.getLogger("bot.observe")

SAMPLE_SECONDS = 60.0
KEEP_DAYS = 8  # the longest chart is 7 days
PRUNE_SECONDS = 3600.0

metadata = sa.MetaData()
samples = sa.Table(
    "bot_heartbeat_samples",
    metadata,
    sa.Column("workflow", sa.String(128), primary_key=True),
    sa.Column("time", sa.Float, primary_key=True),  # epoch seconds
    sa.Column("age", sa.Float, nullable=False),  # seconds since its heartbeat, then
)


class HeartbeatStore:
    """The samples in the control DB; every call blocks (run it in a thread)."""

    def __init__(self, engine: sa.Engine) -> None:
        self._engine = engine
        self._ready = False

    def _table(self) -> None:
        if not self._ready:
            create_tables(self._engine, metadata)
            self._ready = True

    def write(self, moment: float, ages: Sequence[tuple[str, float]]) -> None:
        self._table()
        if not ages:
            return
        rows = [{"workflow": name, "time": moment, "age": age} for name, age in ages]
        with self._engine.begin() as conn:
            conn.execute(sa.insert(samples), rows)

    def forget(self, older_than: float) -> int:
        self._table()
        with self._engine.begin() as conn:
            return conn.execute(sa.delete(samples).where(samples.c.time < older_than)).rowcount

    def read(self, workflow: str, start: float, end: float) -> list[tuple[float, float]]:
        """(epoch seconds, age) of ``workflow`` within ``start``..``end``, oldest first."""
        self._table()
        query = (
            sa.select(samples.c.time, samples.c.age)
            .where(samples.c.workflow == workflow, samples.c.time.between(start, end))
            .order_by(samples.c.time)
        )
        with self._engine.connect() as conn:
            return [(float(moment), float(age)) for moment, age in conn.execute(query)]


def live_ages(statuses: Sequence[WorkflowStatus]) -> list[tuple[str, float]]:
    """The heartbeat age of each workflow whose process is live and has written one."""
    return [
        (status.name, status.heartbeat_age)
        for status in statuses
        if status.state in LIVE_STATES and status.heartbeat_age is not None
    ]


class HeartbeatSampler:
    """Samples this node's heartbeat ages every ``every`` seconds, from ``start`` to ``stop``."""

    def __init__(
        self,
        store: HeartbeatStore,
        statuses: Callable[[], Awaitable[Sequence[WorkflowStatus]]],
        *,
        every: float = SAMPLE_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self._statuses = statuses
        self._every = every
        self._clock = clock
        self._task: asyncio.Task[None] | None = None
        self._pruned = 0.0
        self._failing = False

    async def sample(self) -> None:
        """Take one sample (and forget old ones, hourly)."""
        now = self._clock()
        ages = live_ages(await self._statuses())
        await asyncio.to_thread(self.store.write, now, ages)
        if now - self._pruned >= PRUNE_SECONDS:
            await asyncio.to_thread(self.store.forget, now - KEEP_DAYS * 86400)
            self._pruned = now

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="heartbeat-samples")

    async def stop(self) -> None:
        await cancel(self._task)
        self._task = None

    async def _run(self) -> None:
        while True:
            try:
                await self.sample()
                self._failing = False
            except Exception as exc:  # a missed sample is a gap in a line, nothing more
                if not self._failing:
                    log.warning("charts: cannot sample heartbeat ages: %s", exc)
                self._failing = True
            await asyncio.sleep(self._every)
