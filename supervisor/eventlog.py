"""The control DB's event log, read back in order: for a consumer that must not miss an event.

The supervisor commits every event here before it publishes it (``supervisor.control``);
a consumer that keeps a cursor (the bot's alert forwarder) replays what it has not
seen from these, after a kill as after a normal start. A consumer that draws a window
of history (the bot's charts) reads the events in it and where each workflow stood
when it opened (``events_since``, ``last_before``).
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, func, select

from supervisor.control import events
from supervisor.events import EventRecord


def last_event_id(conn: Connection) -> int:
    """The id of the newest event in the log (0 when there is none)."""
    return int(conn.execute(select(func.max(events.c.id))).scalar() or 0)


def events_after(
    conn: Connection, event_id: int, limit: int = 1000, workflows: list[str] | None = None
) -> list[tuple[int, str]]:
    """Stored events newer than ``event_id``, oldest first, as (id, JSON payload); only
    those of ``workflows`` when given (a fleet node's own)."""
    query = select(events.c.id, events.c.payload).where(
        events.c.id > event_id, events.c.payload.is_not(None)
    )
    if workflows is not None:
        query = query.where(events.c.workflow.in_(workflows))
    rows = conn.execute(query.order_by(events.c.id).limit(limit)).all()
    return [(int(row.id), str(row.payload)) for row in rows]


def _aware(moment: datetime) -> datetime:
    """SQLite hands back naive datetimes; every time in the log is UTC."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _record(row: Any) -> EventRecord:  # a Row of time, workflow, kind, detail
    return EventRecord(_aware(row.time), row.workflow, row.kind, row.detail)


def events_since(
    conn: Connection,
    since: datetime,
    *,
    workflows: Collection[str] | None = None,
    kinds: Collection[str] | None = None,
) -> list[EventRecord]:
    """Stored events at or after ``since``, oldest first (in the order they were recorded);
    only those of ``workflows`` and of ``kinds`` when given. For a history over a window."""
    columns = (events.c.time, events.c.workflow, events.c.kind, events.c.detail)
    query = select(*columns).where(events.c.time >= since)
    if workflows is not None:
        query = query.where(events.c.workflow.in_(list(workflows)))
    if kinds is not None:
        query = query.where(events.c.kind.in_(list(kinds)))
    return [_record(row) for row in conn.execute(query.order_by(events.c.id))]


def last_before(
    conn: Connection,
    moment: datetime,
    *,
    kinds: Collection[str],
    workflows: Collection[str] | None = None,
) -> dict[str, EventRecord]:
    """Per workflow, its newest event of one of ``kinds`` before ``moment``: where each
    stood when a window opens. A workflow with none is absent."""
    newest = select(func.max(events.c.id).label("id")).where(
        events.c.time < moment, events.c.kind.in_(list(kinds))
    )
    if workflows is not None:
        newest = newest.where(events.c.workflow.in_(list(workflows)))
    ids = newest.group_by(events.c.workflow).subquery()
    columns = (events.c.time, events.c.workflow, events.c.kind, events.c.detail)
    rows = conn.execute(select(*columns).join(ids, events.c.id == ids.c.id))
    return {row.workflow: _record(row) for row in rows}
