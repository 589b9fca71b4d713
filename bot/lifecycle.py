"""The bot notices it was killed: its last-alive time and a clean-stop mark in the control DB.

A SIGKILL, an OOM kill or a power cut leaves no goodbye, so the chat would
never learn that the bot (and with it the alerts) was gone. Each run stamps
its row every ``ALIVE_EVERY_SECONDS`` from the event loop and marks it
stopped at a clean shutdown; the next run reads the row before overwriting
it and says in its hello how long the bot was down and whether it died.

The down window of an unclean stop starts at the last stamp, so it is up to
``ALIVE_EVERY_SECONDS`` too long; a run that dies during its first second
may leave no stamp and is then reported as of the previous one. One row per
host, so bots on several hosts sharing a Postgres control DB keep apart.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Column, Engine, Float, MetaData, String, insert, select, update
from sqlalchemy import Table as SATable
from sqlalchemy.exc import SQLAlchemyError

from bot.healthcheck import Pinger
from supervisor.cancelling import cancel
from supervisor.dbengine import create_tables

log = logging.getLogger("bot")
ALIVE_EVERY_SECONDS = 10.0

metadata = MetaData()

runs = SATable(
    "bot_lifecycle",
    metadata,
    Column("host", String(255), primary_key=True),
    Column("alive_at", Float, nullable=False),  # epoch seconds, like the outbox
    Column("stopped_at", Float),  # set by a clean stop, cleared at start
)


@dataclass(frozen=True, slots=True)
class PreviousRun:
    """How the bot's previous run on this host ended, and when it was last known alive."""

    clean: bool
    last_alive: datetime


class RunRecord:
    """This host's row: read the previous run, then stamp this one."""

    def __init__(self, engine: Engine, host: str | None = None) -> None:
        self.engine = engine
        self.host = host or socket.gethostname()
        create_tables(engine, metadata)

    def begin(self, now: float) -> PreviousRun | None:
        """The previous run (None on the first start), then mark this run alive and unstopped."""
        with self.engine.begin() as conn:
            row = conn.execute(select(runs).where(runs.c.host == self.host)).first()
            values = {"alive_at": now, "stopped_at": None}
            if row is None:
                conn.execute(insert(runs).values(host=self.host, **values))
                return None
            conn.execute(update(runs).where(runs.c.host == self.host).values(**values))
        clean = row.stopped_at is not None
        return PreviousRun(clean, datetime.fromtimestamp(row.stopped_at or row.alive_at, UTC))

    def alive(self, now: float) -> None:
        with self.engine.begin() as conn:
            conn.execute(update(runs).where(runs.c.host == self.host).values(alive_at=now))

    def stopped(self, now: float) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                update(runs).where(runs.c.host == self.host).values(alive_at=now, stopped_at=now)
            )


class Lifecycle:
    """Starts and stops with the bot: the run record, its alive stamps and the pinger."""

    def __init__(
        self,
        engine: Engine,
        *,
        pinger: Pinger | None = None,
        every: float = ALIVE_EVERY_SECONDS,
        clock: Callable[[], float] = time.time,
        host: str | None = None,
    ) -> None:
        """``host``: the row's name (the fleet node's; this host's name by default)."""
        self.record = RunRecord(engine, host)
        self.pinger = pinger
        self.every = every
        self.clock = clock
        self._stamping: asyncio.Task[None] | None = None

    async def start(self) -> PreviousRun | None:
        """Read how the previous run ended, then keep this one's stamp fresh."""
        previous = await asyncio.to_thread(self.record.begin, self.clock())
        self._stamping = asyncio.create_task(self._stamp())
        if self.pinger is not None:
            self.pinger.start(previous_failed=previous is not None and not previous.clean)
        return previous

    async def stop(self) -> None:
        """Mark a clean stop; only a bot that gets here was not killed."""
        if self.pinger is not None:
            await self.pinger.stop()
        await cancel(self._stamping)
        await asyncio.to_thread(self.record.stopped, self.clock())

    async def _stamp(self) -> None:
        """From the event loop, so a hung loop stops stamping; the write runs off it."""
        while True:
            await asyncio.sleep(self.every)
            try:
                await asyncio.to_thread(self.record.alive, self.clock())
            except SQLAlchemyError as exc:
                log.warning("could not record that the bot is alive: %s", type(exc).__name__)


def downtime_note(previous: PreviousRun | None, now: datetime, restarted: int) -> str | None:
    """The hello's line about the previous run's end: None on a first start.

    ``restarted`` counts workflows a killed run left behind that were ended
    and started again (they resume from their checkpoints).
    """
    if previous is None:
        return None
    window = f"{_clock(previous.last_alive, now)}–{_clock(now, now)} UTC"
    if previous.clean:
        return f"bot was down {window}"
    note = f"bot was down {window}, unclean stop"
    if restarted:
        plural = "workflow" if restarted == 1 else "workflows"
        note += f"; {restarted} {plural} restarted and resumed"
    return note


def _clock(moment: datetime, now: datetime) -> str:
    """HH:MM in UTC, with the date when it is not today's."""
    moment = moment.astimezone(UTC)
    return (
        f"{moment:%H:%M}"
        if moment.date() == now.astimezone(UTC).date()
        else f"{moment:%m-%d %H:%M}"
    )
