"""The control DB's event log, read back in order: for a consumer that must not miss an event.

The supervisor commits every event here before it publishes it (``supervisor.control``);
a consumer that keeps a cursor (the bot's alert forwarder) replays what it has not
seen from these, after a kill as after a normal start.
"""

from __future__ import annotations

from sqlalchemy import Connection, func, select

from supervisor.control import events


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
