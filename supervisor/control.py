"""The control database: every event, and what the supervisor must remember across restarts.

Plain SQLAlchemy Core with portable types, so ``SUPERVISOR_DB_URL`` may point
at Postgres when several hosts share one history. The schema carries a
version (``supervisor.dbschema``): an older one is upgraded in place, step
by step (``_MIGRATIONS``), a database written by a newer release is refused
rather than misread.

An event and the memory it changes are written in one transaction
(``record``): "error X was seen" is never committed without the event that
reports it, which the bot turns into an alert (``bot.forwarding``). The
events table is therefore also a durable log, read back by id.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from alembic.operations import Operations
from sqlalchemy import (
    Boolean,
    Column,
    Connection,
    DateTime,
    Engine,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    delete,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from supervisor import dbschema
from supervisor.dbengine import make_engine
from supervisor.eventcodec import encode_event
from supervisor.events import Event, EventRecord, IncidentCause, ProcessState
from workflows.usage import Usage

SCHEMA_VERSION = 3
ERROR_REPEAT_WINDOW = timedelta(hours=24)

metadata = MetaData()


def _events_v2() -> list[Column[Any]]:
    """Added in version 2: the whole event as JSON (``supervisor.eventcodec``)."""
    return [Column("payload", Text)]


def _memory_v2() -> list[Column[Any]]:
    """Added in version 2: a workflow left down stays down across restarts (``held_state``:
    ``gave_up`` or ``crashed``), and an open incident continues after one."""
    return [
        Column("held_state", String(16)),
        Column("incident_id", String(32)),
        Column("incident_cause", String(16)),
        Column("incident_since", DateTime(timezone=True)),
        Column("incident_failures", Integer, nullable=False, default=0, server_default="0"),
        Column("incident_detail", Text),
        # A rewrite of the same error is reported again, with how often it came lately.
        Column("last_error_version", String(64)),
        Column("error_times", Text),  # JSON: ISO times the last error text was reported
    ]


def _memory_v3() -> list[Column[Any]]:
    """Added in version 3: the agents' usage already counted as spend (JSON of
    ``Usage``), and where the workflow stands with its budget (JSON of ``BudgetMemory``)."""
    return [Column("usage_seen", Text), Column("budget", Text)]


events = Table(
    "supervisor_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("time", DateTime(timezone=True), nullable=False, index=True),
    Column("workflow", String(128), nullable=False, index=True),
    Column("kind", String(32), nullable=False),
    Column("detail", Text, nullable=False),
    *_events_v2(),
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
    *_memory_v2(),
    *_memory_v3(),
)

# Added in version 3: each increase of a workflow's agent.cost_usd, on the local day
# (ALERT_TIMEZONE) it was seen; what /cost, the budgets and the metrics add up.
spend = Table(
    "workflow_spend",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("time", DateTime(timezone=True), nullable=False),
    Column("day", String(10), nullable=False),
    Column("workflow", String(128), nullable=False),
    Column("input_tokens", Integer, nullable=False),
    Column("output_tokens", Integer, nullable=False),
    Column("cost_usd", Float, nullable=False),
    Index("ix_workflow_spend_day_workflow", "day", "workflow"),
)


def _to_v2(op: Operations) -> None:
    for column in _memory_v2():
        op.add_column(memory.name, column)
    for column in _events_v2():
        op.add_column(events.name, column)


def _to_v3(op: Operations) -> None:
    for column in _memory_v3():
        op.add_column(memory.name, column)


# _MIGRATIONS[n] upgrades a database at version n to n + 1 (a new table needs none:
# ``create_all`` makes it before the upgrade runs).
_MIGRATIONS: dict[int, Callable[[Operations], None]] = {1: _to_v2, 2: _to_v3}
SCHEMA = dbschema.Schema("control DB", "schema_version", SCHEMA_VERSION, metadata, _MIGRATIONS)


@dataclass(frozen=True, slots=True)
class Spent:
    """An increase of one workflow's usage, seen at ``time`` on local ``day``."""

    workflow: str
    time: datetime
    day: str
    usage: Usage


class ControlDBError(RuntimeError):
    """The control DB cannot be used; the message says which one and what to do."""


class SchemaTooNew(ControlDBError):
    """The control DB was written by a newer release of the supervisor."""


@dataclass(slots=True)
class Incident:
    """One outage: from a crash or hang until a fresh heartbeat after a restart."""

    id: str
    cause: IncidentCause
    since: datetime
    last_detail: str
    failures: int = 0  # crashes and hangs so far


@dataclass(slots=True)
class BudgetMemory:
    """Where a workflow stands with its ``budget_usd_per_day`` (``supervisor.budget``)."""

    day: str | None = None  # the budget day ``warned`` and ``granted_usd`` are about
    warned: bool = False  # the 80% note was sent that day
    granted_usd: float = 0.0  # [Resume once]: allowed on top of the budget that day
    paused_on: str | None = None  # the day the budget paused it; resumed when it ends
    paused_at: float | None = None  # when (epoch seconds): names the pause's alert
    raised_usd: float | None = None  # [Raise ×2]: the budget in force instead of the TOML's,
    raised_from: float | None = None  # while the TOML still says this


@dataclass(slots=True)
class Memory:
    """What survives a supervisor restart for one workflow."""

    restarts: int = 0
    paused: bool = False
    last_error_seen: str | None = None
    last_status_seen: str | None = None
    last_error_id: int = 0  # newest entry of the workflow's error log already reported
    # "gave_up" or "crashed" (left down by its policy): waits for a person, across restarts.
    held: ProcessState | None = None
    incident: Incident | None = None
    last_error_version: str | None = None  # of the last_error value last read
    error_times: list[datetime] = field(default_factory=list)  # last_error_seen's reports
    usage_seen: Usage = field(default_factory=Usage)  # the run's usage already counted
    budget: BudgetMemory = field(default_factory=BudgetMemory)

    def count_error(self, text: str, now: datetime) -> int:
        """Note a report of ``text``; how many times it was reported in the last day."""
        recent = [t for t in self.error_times if now - t < ERROR_REPEAT_WINDOW]
        self.error_times = [*recent, now] if text == self.last_error_seen else [now]
        self.last_error_seen = text
        return len(self.error_times)

    def copy(self) -> Memory:
        """A snapshot to hand to the writer thread while the loop goes on changing this one."""
        incident = None if self.incident is None else replace(self.incident)
        return replace(
            self,
            incident=incident,
            error_times=list(self.error_times),
            budget=replace(self.budget),
        )


class ControlDB:
    """Events and per-workflow memory in the control database."""

    def __init__(self, url: str) -> None:
        self.engine: Engine = make_engine(url)
        try:
            with self.engine.begin() as conn:
                dbschema.settle(conn, SCHEMA)  # nodes starting together: one creates it
        except dbschema.SchemaTooNew as exc:
            self.engine.dispose()
            raise SchemaTooNew(str(exc)) from exc
        except SQLAlchemyError as exc:
            self.engine.dispose()
            shown = make_url(url).render_as_string(hide_password=True)
            raise ControlDBError(
                f"control DB {shown} is unusable ({getattr(exc, 'orig', None) or exc}); "
                "move it aside or point SUPERVISOR_DB_URL elsewhere"
            ) from exc

    def close(self) -> None:
        self.engine.dispose()

    def record(self, event: Event, remembered: Memory | None = None) -> int:
        """Store ``event`` (and the memory it changed, in the same transaction); its id."""
        with self.engine.begin() as conn:
            result = conn.execute(
                insert(events).values(
                    time=event.time,
                    workflow=event.workflow,
                    kind=event.kind,
                    detail=event.detail,
                    payload=encode_event(event),
                )
            )
            if remembered is not None:
                _save_memory(conn, event.workflow, remembered)
        (event_id,) = result.inserted_primary_key or (None,)
        assert isinstance(event_id, int)
        return event_id

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
        """Drop events (and spend) older than ``older_than``; the tables would only grow."""
        with self.engine.begin() as conn:
            conn.execute(delete(spend).where(spend.c.time < older_than))
            return conn.execute(delete(events).where(events.c.time < older_than)).rowcount

    def load_memory(self) -> dict[str, Memory]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(memory)).all()
        return {row.name: _memory_of(row) for row in rows}

    def save_memory(self, name: str, remembered: Memory) -> None:
        with self.engine.begin() as conn:
            _save_memory(conn, name, remembered)

    def record_spend(self, spent: Spent, remembered: Memory) -> None:
        """Add an increase of a workflow's usage, and the memory that counted it, at once:
        a kill between the two would count it twice or never."""
        with self.engine.begin() as conn:
            conn.execute(
                insert(spend).values(
                    time=spent.time,
                    day=spent.day,
                    workflow=spent.workflow,
                    input_tokens=spent.usage.input_tokens,
                    output_tokens=spent.usage.output_tokens,
                    cost_usd=spent.usage.cost_usd,
                )
            )
            _save_memory(conn, spent.workflow, remembered)

    def spend_by_day(self, since_day: str) -> dict[str, dict[str, float]]:
        """USD per workflow and local day, from ``since_day`` on."""
        query = (
            select(spend.c.workflow, spend.c.day, func.sum(spend.c.cost_usd))
            .where(spend.c.day >= since_day)
            .group_by(spend.c.workflow, spend.c.day)
        )
        found: dict[str, dict[str, float]] = {}
        with self.engine.connect() as conn:
            for workflow, day, usd in conn.execute(query):
                found.setdefault(workflow, {})[day] = float(usd)
        return found


def _memory_of(row: Any) -> Memory:
    incident = None
    if row.incident_id:
        incident = Incident(
            row.incident_id,
            row.incident_cause,
            _aware(row.incident_since),
            row.incident_detail or "",
            row.incident_failures,
        )
    return Memory(
        row.restarts,
        row.paused,
        row.last_error_seen,
        row.last_status_seen,
        row.last_error_id,
        row.held_state,
        incident,
        row.last_error_version,
        [_aware(datetime.fromisoformat(t)) for t in json.loads(row.error_times or "[]")],
        Usage(**json.loads(row.usage_seen or "{}")),
        BudgetMemory(**json.loads(row.budget or "{}")),
    )


def _save_memory(conn: Connection, name: str, remembered: Memory) -> None:
    incident = remembered.incident
    values: dict[str, Any] = {
        "restarts": remembered.restarts,
        "paused": remembered.paused,
        "last_error_seen": remembered.last_error_seen,
        "last_status_seen": remembered.last_status_seen,
        "last_error_id": remembered.last_error_id,
        "held_state": remembered.held,
        "incident_id": incident.id if incident else None,
        "incident_cause": incident.cause if incident else None,
        "incident_since": incident.since if incident else None,
        "incident_failures": incident.failures if incident else 0,
        "incident_detail": incident.last_detail if incident else None,
        "last_error_version": remembered.last_error_version,
        "error_times": json.dumps([t.isoformat() for t in remembered.error_times]),
        "usage_seen": json.dumps(asdict(remembered.usage_seen)),
        "budget": json.dumps(asdict(remembered.budget)),
        "updated_at": datetime.now(UTC),
    }
    changed = conn.execute(update(memory).where(memory.c.name == name).values(**values))
    if changed.rowcount == 0:
        conn.execute(insert(memory).values(name=name, **values))


def _aware(moment: datetime) -> datetime:
    """SQLite hands back naive datetimes; everything here is UTC."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
