"""The digest: once a day (or every ``SUPERVISOR_STATUS_INTERVAL_SECONDS``), what changed.

A list of every workflow every ten minutes is noise nobody reads; what a
person wants over breakfast is what changed since they last looked: states
that changed, processes that were restarted, errors that are new. So the
digest compares ``supervisor.status()`` with the snapshot the previous digest
took, which lives in the control DB (``bot_digest``): a restart of the bot
neither resets it nor sends an extra digest. The digest and the snapshot it
took are committed in one transaction (``Notifier.save_all``), so a kill
neither loses a digest nor sends one twice.

What it does not promise: it compares two moments, so a workflow that
crashed and recovered between them shows as restarted (its process is new),
not how often; and a state that changed and changed back shows no change.
The diff (``digest_text``) and the timetable (``next_digest``) are pure; the
``DigestScheduler`` is the thin part with a clock.

When a workflow was down (hung or crashed) since the last digest, the fleet's
uptime chart follows the digest as a photo (``DigestChart``, drawn from the
event log by ``bot.observe.pictures``). A photo is not kept in the outbox: it
is sent once the outbox has sent the digest (or after ``CHART_WAIT_SECONDS``),
directly, a few tries; a kill after the digest's commit loses the chart, never
the digest, and the digest's words say what changed without it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta, tzinfo
from datetime import time as time_of_day

import sqlalchemy as sa

from bot.cost import usd
from bot.localtime import local_time
from bot.outbox import Alert, Notifier
from bot.text import TELEGRAM_LIMIT, clip_html, esc, esc_clip
from bot.transport import Document
from supervisor.cancelling import cancel
from supervisor.dbengine import create_tables
from supervisor.events import WorkflowStatus

log = logging.getLogger(__name__)

ERROR_IN_DIGEST = 200
LONGEST_NAP_SECONDS = 60.0  # look again at least this often: the wall clock may jump
RETRY_SECONDS = 60.0
SNAPSHOT = "last"
CHART_WAIT_SECONDS = 30.0  # the chart goes after the digest's words, if they go soon

metadata = sa.MetaData()
digests = sa.Table(
    "bot_digest",
    metadata,
    sa.Column("name", sa.String(32), primary_key=True),
    sa.Column("taken_at", sa.Float, nullable=False),  # epoch seconds
    sa.Column("snapshot", sa.Text, nullable=False),  # JSON: {workflow: Seen}
)


@dataclass(frozen=True, slots=True)
class Seen:
    """What the digest compares of one workflow between two digests."""

    state: str
    last_error: str | None = None
    started_at: str | None = None  # ISO time its current process started: a new one = restarted
    week_usd: float = 0.0  # its agents' spend over the last 7 days (supervisor.spending)


Snapshot = Mapping[str, Seen]


@dataclass(frozen=True, slots=True)
class DigestChart:
    """The picture that follows a digest: ``draw(since, until)`` (epoch seconds) makes it,
    or None when nothing was down; ``send`` uploads it to the alert chat."""

    draw: Callable[[float, float], Awaitable[Document | None]]
    send: Callable[[Document], Awaitable[None]]


def snapshot(statuses: Sequence[WorkflowStatus]) -> dict[str, Seen]:
    return {
        status.name: Seen(
            status.state,
            status.last_error,
            status.started_at.isoformat() if status.started_at else None,
            status.spend.week_usd if status.spend else 0.0,
        )
        for status in statuses
    }


SPENDERS_NAMED = 3


def spend_line(current: Snapshot) -> str | None:
    """``💸 the last 7 days: $12.30 (api $8.10 · etl $3.20 · 2 more)``; None: nothing spent."""
    spending = sorted(
        ((seen.week_usd, name) for name, seen in current.items() if seen.week_usd > 0),
        reverse=True,
    )
    if not spending:
        return None
    named = [f"{esc(name)} {usd(week)}" for week, name in spending[:SPENDERS_NAMED]]
    more = len(spending) - SPENDERS_NAMED
    if more > 0:
        named.append(f"{more} more")
    total = sum(week for week, _ in spending)
    return f"💸 the last 7 days: {usd(total)} ({' · '.join(named)}); /cost for all"


def _state(state: str) -> str:
    return state.replace("_", " ")


def _changes(before: Seen | None, after: Seen | None) -> list[str]:
    """What changed for one workflow, in words; empty when nothing did."""
    if after is None:
        return ["no longer configured"]
    if before is None:
        return [f"new, {_state(after.state)}"]
    changes = []
    if after.state != before.state:
        changes.append(f"{_state(before.state)} → {_state(after.state)}")
    if before.started_at and after.started_at and after.started_at != before.started_at:
        changes.append("restarted")
    if after.last_error and after.last_error != before.last_error:
        changes.append(f"new error: {esc_clip(after.last_error, ERROR_IN_DIGEST)}")
    return changes


def digest_text(
    previous: Snapshot, current: Snapshot, since: float, tz: tzinfo, *, now: float
) -> str:
    """What changed between two snapshots, one line per workflow that changed."""
    when = local_time(since, tz, now)
    lines = []
    for name in sorted({*previous, *current}):
        changes = _changes(previous.get(name), current.get(name))
        if changes:
            lines.append(f"• <b>{esc(name)}</b>: {'; '.join(changes)}")
    spent = spend_line(current)
    if not lines:
        quiet = f"📋 <b>Digest</b>: no changes since {when}"
        return f"{quiet}\n{spent}" if spent else quiet
    head = [f"📋 <b>Digest</b>: since {when}", *([spent] if spent else [])]
    return clip_html("\n".join([*head, *lines]), TELEGRAM_LIMIT)


def next_digest(after: float, *, period: float, at: time_of_day, tz: tzinfo) -> float:
    """When the digest after one at ``after`` is due: ``period`` later, or (0) next ``at``."""
    if period > 0:
        return after + period
    local = datetime.fromtimestamp(after, tz)
    due = datetime.combine(local.date(), at, tz)
    if due.timestamp() <= after:
        due = datetime.combine(local.date() + timedelta(days=1), at, tz)
    return due.timestamp()


class DigestStore:
    """The snapshot the last digest took, in the control DB."""

    def __init__(self, engine: sa.Engine) -> None:
        self._engine = engine
        self._table_ready = False

    def load(self) -> tuple[float, dict[str, Seen]] | None:
        if not self._table_ready:
            create_tables(self._engine, metadata)
            self._table_ready = True
        with self._engine.connect() as conn:
            row = conn.execute(sa.select(digests).where(digests.c.name == SNAPSHOT)).first()
        if row is None:
            return None
        seen = {name: Seen(**fields) for name, fields in json.loads(row.snapshot).items()}
        return row.taken_at, seen

    def writer(self, taken_at: float, seen: Snapshot) -> Callable[[sa.Connection], None]:
        """Writes ``seen`` as the last snapshot, in the caller's transaction."""
        encoded = json.dumps({name: asdict(one) for name, one in seen.items()})

        def write(conn: sa.Connection) -> None:
            conn.execute(sa.delete(digests).where(digests.c.name == SNAPSHOT))
            conn.execute(
                sa.insert(digests).values(name=SNAPSHOT, taken_at=taken_at, snapshot=encoded)
            )

        return write

    def save(self, taken_at: float, seen: Snapshot) -> None:
        with self._engine.begin() as conn:
            self.writer(taken_at, seen)(conn)


class DigestScheduler:
    """Sends the digest when it is due; the clock is injected, the DB work runs off the loop."""

    def __init__(
        self,
        engine: sa.Engine,
        statuses: Callable[[], Awaitable[Sequence[WorkflowStatus]]],
        notifier: Notifier,
        *,
        period: float,
        at: time_of_day,
        tz: tzinfo,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = DigestStore(engine)
        self._statuses = statuses
        self._notifier = notifier
        self._period = period
        self._at = at
        self._tz = tz
        self._clock = clock
        self._task: asyncio.Task[None] | None = None
        self.chart: DigestChart | None = None  # set by ``bot.observe.pictures.attach``

    def _next(self, after: float) -> float:
        return next_digest(after, period=self._period, at=self._at, tz=self._tz)

    async def tick(self) -> float:
        """Send the digest if it is due; returns seconds until the next one.

        The first run ever only takes the snapshot the first digest will
        compare with.
        """
        now = self._clock()
        stored = await asyncio.to_thread(self._store.load)
        if stored is None:
            current = snapshot(await self._statuses())
            await asyncio.to_thread(self._store.save, now, current)
            return self._next(now) - now
        taken_at, previous = stored
        if self._next(taken_at) > now:
            return self._next(taken_at) - now
        current = snapshot(await self._statuses())
        text = digest_text(previous, current, taken_at, self._tz, now=now)
        digest = Alert(text, loud=False, mergeable=False)
        await asyncio.to_thread(self._notifier.save_all, [digest], self._store.writer(now, current))
        self._notifier.wake()
        if self.chart is not None:
            await self._send_chart(self.chart, taken_at, now)
        return self._next(now) - now

    async def _send_chart(self, chart: DigestChart, since: float, until: float) -> None:
        """The chart of the digest's span, after its words; a failure is logged, no more."""
        try:
            picture = await chart.draw(since, until)
            if picture is None:
                return
            await self._notifier.wait_idle(CHART_WAIT_SECONDS)
            await chart.send(picture)
        except Exception:
            log.exception("digest: could not send its chart")

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="digest")

    async def stop(self) -> None:
        await cancel(self._task)
        self._task = None

    async def _run(self) -> None:
        while True:
            try:
                wait = await self.tick()
            except Exception:
                log.exception("digest: could not send; trying again later")
                wait = RETRY_SECONDS
            await asyncio.sleep(min(max(wait, 0.0), LONGEST_NAP_SECONDS))
