"""From supervisor events to outbox rows: nothing lost, nothing doubled, across any kill.

The supervisor commits each event to the control DB's event log (together
with the memory it changed: "error X was seen") before it publishes it with
its id. Here an event becomes alerts, and those alerts are committed to the
outbox in one transaction with this consumer's cursor: the id of the last
event turned into alerts. So at any instant of a kill -9:

- before the supervisor's commit: nothing says the error was seen, and the
  next start reads it again and announces it;
- between the two commits: the event is in the log past the cursor, and the
  next start replays it (``replay``) before any live event;
- after ours: the alerts are in the outbox, which delivers them.

In a fleet every node forwards its own workflows' events (the event log is
shared) from a cursor of its own, ``alerts@<node>``: a node that was down
replays what it left, and never another node's events.

What it does not promise: if the control DB refuses our transaction, the
alerts wait in the notifier's memory (``Notifier.enqueue``) and the cursor
stays behind, so a kill before the DB recovers may announce that event twice.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import replace

import sqlalchemy as sa

from bot.alerts import AlertComposer
from bot.outbox import Alert, Notifier
from supervisor.bus import Subscription
from supervisor.dbengine import create_tables
from supervisor.eventcodec import UnreadableEvent, decode_event
from supervisor.eventlog import events_after, last_event_id
from supervisor.events import Event
from supervisor.faults import crash_point

log = logging.getLogger("bot")

CONSUMER = "alerts"

metadata = sa.MetaData()
cursors = sa.Table(
    "bot_event_cursor",
    metadata,
    sa.Column("consumer", sa.String(64), primary_key=True),
    sa.Column("event_id", sa.BigInteger, nullable=False),
)


def _advance(consumer: str, event_id: int) -> Callable[[sa.Connection], None]:
    def advance(conn: sa.Connection) -> None:
        conn.execute(
            sa.update(cursors)
            .where(cursors.c.consumer == consumer, cursors.c.event_id < event_id)
            .values(event_id=event_id)
        )

    return advance


class EventForwarder:
    """Turns every supervisor event into alerts in the outbox, exactly once."""

    def __init__(
        self,
        engine: sa.Engine,
        composer: AlertComposer,
        notifier: Notifier,
        *,
        node: str | None = None,
        workflows: Sequence[str] | None = None,
    ) -> None:
        """``node`` and ``workflows``: in a fleet, this node's name and its workflows."""
        self._engine = engine
        self._composer = composer
        self._notifier = notifier
        self._consumer = CONSUMER if node is None else f"{CONSUMER}@{node}"
        self._workflows = None if workflows is None else list(workflows)
        self._cursor = 0

    @property
    def workflows(self) -> list[str] | None:
        return self._workflows

    def open(self, start_after: int | None = None) -> None:
        """Read the cursor; on the first start it begins at the end of the log (no history),
        or after ``start_after`` (a headless node's events, from when it joined)."""
        create_tables(self._engine, metadata)
        with self._engine.begin() as conn:
            stored = conn.execute(
                sa.select(cursors.c.event_id).where(cursors.c.consumer == self._consumer)
            ).scalar()
            if stored is None:
                stored = last_event_id(conn) if start_after is None else start_after
                conn.execute(sa.insert(cursors).values(consumer=self._consumer, event_id=stored))
        self._cursor = int(stored)

    async def run(self, subscription: Subscription) -> None:
        """Replay what a killed predecessor left, then forward live events until the bus closes."""
        await self.replay()
        async for event in subscription:
            if event.id is None or event.id > self._cursor:
                await self.forward(event)

    async def replay(self) -> None:
        """Forward the logged events past the cursor, oldest first."""
        while stored := await asyncio.to_thread(self._logged_after, self._cursor):
            for event_id, payload in stored:
                try:
                    event = replace(decode_event(payload), id=event_id)
                except UnreadableEvent as exc:
                    log.warning("skipping stored event %d: %s", event_id, exc)
                    await self._commit([], event_id)
                    continue
                await self.forward(event)

    def _logged_after(self, event_id: int) -> list[tuple[int, str]]:
        with self._engine.connect() as conn:
            return events_after(conn, event_id, workflows=self._workflows)

    async def forward(self, event: Event) -> None:
        try:
            alerts = self._composer.alerts(event)
        except Exception:
            log.exception("could not compose an alert for %s %s", event.workflow, event.kind)
            alerts = []
        if event.id is None:  # not in the log: nothing to replay it from
            for alert in alerts:
                await self._notifier.enqueue(alert)
            return
        crash_point(f"before-alert-commit:{event.kind}")
        await self._commit(alerts, event.id)
        crash_point(f"after-alert-commit:{event.kind}")

    async def _commit(self, alerts: list[Alert], event_id: int) -> None:
        try:
            await asyncio.to_thread(
                self._notifier.save_all, alerts, _advance(self._consumer, event_id)
            )
        except sa.exc.SQLAlchemyError as exc:
            log.error("alert outbox: could not commit alerts of event %d: %s", event_id, exc)
            for alert in alerts:
                await self._notifier.enqueue(alert)
        self._cursor = event_id
        self._notifier.wake()
