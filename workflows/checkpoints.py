"""Durable record of runs and task calls, in the workflow's own SQLite file.

A task call is identified by (run id, call index): the position of the call
among all task calls the run has made. Workflow code is deterministic given
the stored outputs, so replaying ``main`` after a crash reaches the same calls
in the same order; the store answers "already done, here is the output" for
each until the first unfinished one. The task id is stored too, so a changed
code path is noticed instead of returning another task's output.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import (
    Column,
    DateTime,
    Engine,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    event,
    insert,
    select,
    update,
)

RunStatus = Literal["running", "done", "failed", "interrupted"]
CallStatus = Literal["running", "done", "failed", "skipped"]

metadata = MetaData()

runs = Table(
    "workflow_runs",
    metadata,
    Column("run_id", String(32), primary_key=True),
    Column("workflow", String(128), nullable=False, index=True),
    Column("input", Text, nullable=False),
    Column("status", String(16), nullable=False),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True)),
)

task_calls = Table(
    "task_calls",
    metadata,
    Column("run_id", String(32), primary_key=True),
    Column("call_index", Integer, primary_key=True),
    Column("task_id", String(128), nullable=False),
    Column("status", String(16), nullable=False),
    Column("output", Text),  # JSON of the validated output
    Column("attempts", Integer, nullable=False, default=0),
    Column("error", Text),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True)),
)


@dataclass(frozen=True, slots=True)
class StoredCall:
    call_index: int
    task_id: str
    status: CallStatus
    output: str | None
    attempts: int


def _now() -> datetime:
    return datetime.now(UTC)


def make_store_engine(path: Path) -> Engine:
    """A SQLAlchemy engine on the workflow database, WAL mode so readers never block."""
    path.parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(f"sqlite:///{path}", connect_args={"timeout": 10})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    return engine


class CheckpointStore:
    """Runs and task calls of one workflow database."""

    def __init__(self, path: Path) -> None:
        self.engine = make_store_engine(path)
        metadata.create_all(self.engine)

    def close(self) -> None:
        self.engine.dispose()

    def open_run(self, workflow: str, input_json: str, *, new_run: bool) -> tuple[str, bool]:
        """The run to execute: the latest unfinished one with the same input, or a new one.

        Returns ``(run_id, resumed)``.
        """
        with self.engine.begin() as conn:
            if not new_run:
                row = conn.execute(
                    select(runs.c.run_id, runs.c.status, runs.c.input)
                    .where(runs.c.workflow == workflow)
                    .order_by(runs.c.started_at.desc())
                    .limit(1)
                ).first()
                if row is not None and row.status != "done" and row.input == input_json:
                    conn.execute(
                        update(runs)
                        .where(runs.c.run_id == row.run_id)
                        .values(status="running", finished_at=None)
                    )
                    return row.run_id, True
            run_id = uuid.uuid4().hex[:12]
            conn.execute(
                insert(runs).values(
                    run_id=run_id,
                    workflow=workflow,
                    input=input_json,
                    status="running",
                    started_at=_now(),
                )
            )
            return run_id, False

    def finish_run(self, run_id: str, status: RunStatus) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                update(runs)
                .where(runs.c.run_id == run_id)
                .values(status=status, finished_at=_now())
            )

    def calls(self, run_id: str) -> dict[int, StoredCall]:
        """Every call recorded for the run, by call index."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(
                    task_calls.c.call_index,
                    task_calls.c.task_id,
                    task_calls.c.status,
                    task_calls.c.output,
                    task_calls.c.attempts,
                ).where(task_calls.c.run_id == run_id)
            ).all()
        return {
            row.call_index: StoredCall(
                row.call_index, row.task_id, row.status, row.output, row.attempts
            )
            for row in rows
        }

    def begin_call(self, run_id: str, call_index: int, task_id: str, *, exists: bool) -> None:
        """Mark the call as running (a new row, or an unfinished one being retried)."""
        values = {"task_id": task_id, "status": "running", "started_at": _now(), "error": None}
        with self.engine.begin() as conn:
            if exists:
                conn.execute(
                    update(task_calls)
                    .where(task_calls.c.run_id == run_id, task_calls.c.call_index == call_index)
                    .values(**values)
                )
            else:
                conn.execute(
                    insert(task_calls).values(
                        run_id=run_id, call_index=call_index, attempts=0, **values
                    )
                )

    def record_attempt(self, run_id: str, call_index: int, error: str) -> None:
        """Count a failed attempt that will be retried."""
        with self.engine.begin() as conn:
            conn.execute(
                update(task_calls)
                .where(task_calls.c.run_id == run_id, task_calls.c.call_index == call_index)
                .values(attempts=task_calls.c.attempts + 1, error=error)
            )

    def end_call(
        self,
        run_id: str,
        call_index: int,
        status: CallStatus,
        *,
        output: str | None = None,
        error: str | None = None,
        attempted: bool = True,
    ) -> None:
        """Finish the call; ``attempted`` counts its last attempt in the same transaction."""
        with self.engine.begin() as conn:
            conn.execute(
                update(task_calls)
                .where(task_calls.c.run_id == run_id, task_calls.c.call_index == call_index)
                .values(
                    status=status,
                    output=output,
                    error=error,
                    finished_at=_now(),
                    attempts=task_calls.c.attempts + int(attempted),
                )
            )
