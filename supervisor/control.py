"""The control database: every event, and what the supervisor must remember across restarts.

Plain SQLAlchemy Core with portable types, so ``SUPERVISOR_DB_URL`` may point
at Postgres when several hosts share one history. The schema carries a
version; a database written by a newer release is refused rather than
misread.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Engine,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    delete,
    insert,
    select,
    update,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from supervisor.dbengine import make_engine
from supervisor.events import Digest, Event

SCHEMA_VERSION = 1

metadata = MetaData()

meta = Table(
    "supervisor_meta",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", String(256), nullable=False),
)

events = Table(
    "supervisor_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("time", DateTime(timezone=True), nullable=False, index=True),
    Column("workflow", String(128), nullable=False, index=True),
    Column("kind", String(32), nullable=False),
    Column("detail", Text, nullable=False),
)

memory = Table(
    "supervisor_workflows",
    metadata,
    Column("name", String(128), primary_key=True),
    Column("restarts", Integer, nullable=False, default=0),
    Column("paused", Boolean, nullable=False, default=False),
    Column("last_error_seen", Text),
    Column("last_status_seen", String(64)),
    Column("last_error_id", Integer, nullable=False, default=0),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)


class ControlDBError(RuntimeError):
    """The control DB cannot be used; the message says which one and what to do."""


class SchemaTooNew(ControlDBError):
    """The control DB was written by a newer release of the supervisor."""


@dataclass(frozen=True, slots=True)
class EventRecord:
    """An event as stored: enough to list a workflow's history."""

    time: datetime
    workflow: str
    kind: str
    detail: str


@dataclass(slots=True)
class Memory:
    """What survives a supervisor restart for one workflow."""

    restarts: int = 0
    paused: bool = False
    last_error_seen: str | None = None
    last_status_seen: str | None = None
    last_error_id: int = 0  # newest entry of the workflow's error log already reported


class ControlDB:
    """Events and per-workflow memory in the control database."""

    def __init__(self, url: str) -> None:
        self.engine: Engine = make_engine(url)
        try:
            metadata.create_all(self.engine)
            self._check_version()
        except SQLAlchemyError as exc:
            self.engine.dispose()
            shown = make_url(url).render_as_string(hide_password=True)
            raise ControlDBError(
                f"control DB {shown} is unusable ({getattr(exc, 'orig', None) or exc}); "
                "move it aside or point SUPERVISOR_DB_URL elsewhere"
            ) from exc

    def _check_version(self) -> None:
        with self.engine.begin() as conn:
            stored = conn.execute(
                select(meta.c.value).where(meta.c.key == "schema_version")
            ).scalar()
            if stored is None:
                conn.execute(insert(meta).values(key="schema_version", value=str(SCHEMA_VERSION)))
            elif int(stored) > SCHEMA_VERSION:
                raise SchemaTooNew(
                    f"control DB schema version {stored} is newer than this release "
                    f"({SCHEMA_VERSION}); upgrade, or point SUPERVISOR_DB_URL elsewhere"
                )

    def close(self) -> None:
        self.engine.dispose()

    def record(self, event: Event) -> None:
        detail = (
            event.detail if not isinstance(event, Digest) else f"{len(event.workflows)} workflows"
        )
        with self.engine.begin() as conn:
            conn.execute(
                insert(events).values(
                    time=event.time, workflow=event.workflow, kind=event.kind, detail=detail
                )
            )

    def recent(self, workflow: str, limit: int) -> list[EventRecord]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(events.c.time, events.c.workflow, events.c.kind, events.c.detail)
                .where(events.c.workflow == workflow)
                .order_by(events.c.id.desc())
                .limit(limit)
            ).all()
        return [EventRecord(_aware(row.time), row.workflow, row.kind, row.detail) for row in rows]

    def forget_events(self, older_than: datetime) -> int:
        """Drop events older than ``older_than``; the table would otherwise only grow."""
        with self.engine.begin() as conn:
            return conn.execute(delete(events).where(events.c.time < older_than)).rowcount

    def load_memory(self) -> dict[str, Memory]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(memory)).all()
        return {
            row.name: Memory(
                row.restarts,
                row.paused,
                row.last_error_seen,
                row.last_status_seen,
                row.last_error_id,
            )
            for row in rows
        }

    def save_memory(self, name: str, remembered: Memory) -> None:
        values: dict[str, Any] = {
            "restarts": remembered.restarts,
            "paused": remembered.paused,
            "last_error_seen": remembered.last_error_seen,
            "last_status_seen": remembered.last_status_seen,
            "last_error_id": remembered.last_error_id,
            "updated_at": datetime.now(UTC),
        }
        with self.engine.begin() as conn:
            changed = conn.execute(update(memory).where(memory.c.name == name).values(**values))
            if changed.rowcount == 0:
                conn.execute(insert(memory).values(name=name, **values))


def _aware(moment: datetime) -> datetime:
    """SQLite hands back naive datetimes; everything here is UTC."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def event_json(event: Event) -> str:
    """One JSON line for ``python -m supervisor run --json``."""
    payload: dict[str, Any] = {
        "kind": event.kind,
        "workflow": event.workflow,
        "detail": event.detail,
        "time": event.time.isoformat(timespec="milliseconds"),
    }
    incident = getattr(event, "incident", None)
    if incident:
        payload["incident"] = incident
    return json.dumps(payload)
