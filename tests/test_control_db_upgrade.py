"""S12: a control DB written by an earlier release is upgraded in place, on SQLite and Postgres,
and keeps what it remembered; one written by a newer release is refused."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from supervisor.control import SCHEMA_VERSION, ControlDB, ControlDBError, Incident, Memory
from supervisor.eventcodec import decode_event
from supervisor.events import Crashed


def first_release_schema(url: str) -> None:
    """The control DB as release 1 left it: no event payloads, no held state, no incident."""
    old = sa.MetaData()
    sa.Table(
        "supervisor_meta",
        old,
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("value", sa.String(256), nullable=False),
    )
    sa.Table(
        "supervisor_events",
        old,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("workflow", sa.String(128), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("detail", sa.Text, nullable=False),
    )
    sa.Table(
        "supervisor_workflows",
        old,
        sa.Column("name", sa.String(128), primary_key=True),
        sa.Column("restarts", sa.Integer, nullable=False),
        sa.Column("paused", sa.Boolean, nullable=False),
        sa.Column("last_error_seen", sa.Text),
        sa.Column("last_status_seen", sa.String(64)),
        sa.Column("last_error_id", sa.Integer, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    engine = sa.create_engine(url)
    old.create_all(engine)
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO supervisor_meta VALUES ('schema_version', '1')"))
        conn.execute(
            sa.text(
                "INSERT INTO supervisor_workflows VALUES "
                "('api', 2, false, 'boom', 'running', 7, :now)"
            ),
            {"now": datetime.now(UTC)},
        )
        conn.execute(
            sa.text(
                "INSERT INTO supervisor_events (time, workflow, kind, detail) "
                "VALUES (:now, 'api', 'crashed', 'exit code 1')"
            ),
            {"now": datetime.now(UTC)},
        )
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def url(tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """A fresh control DB URL on each backend (Postgres only where TEST_POSTGRES_URL is set)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'control.db'}"
    postgres: str = request.getfixturevalue("postgres_url")
    return postgres


def test_a_first_release_control_db_is_upgraded_and_keeps_its_memory(url: str) -> None:
    first_release_schema(url)
    control = ControlDB(url)
    try:
        remembered = control.load_memory()["api"]
        assert (remembered.restarts, remembered.last_error_seen, remembered.last_error_id) == (
            2,
            "boom",
            7,
        )
        assert remembered.held is None
        assert remembered.incident is None
        [old] = control.recent("api", 5)
        assert old.detail == "exit code 1"
        now = datetime.now(UTC)
        incident = Incident("i1", "crash", now, "exit code 1", failures=2)
        crash = Crashed(
            workflow="api",
            time=now,
            incident="i1",
            attempt=1,
            max_attempts=3,
            will_restart=False,
            failures=2,
            exit_code=1,
            log_tail=("Traceback", "ValueError: boom"),
        )
        event_id = control.record(crash, Memory(restarts=3, held="crashed", incident=incident))
        after = control.load_memory()["api"]
        assert after.held == "crashed"
        assert after.incident == incident
        with control.engine.connect() as conn:
            payload = conn.execute(
                sa.text("SELECT payload FROM supervisor_events WHERE id = :id"), {"id": event_id}
            ).scalar_one()
        assert decode_event(payload) == crash
    finally:
        control.close()
    ControlDB(url).close()  # a second open finds it current


def test_a_control_db_from_a_newer_release_is_refused(url: str) -> None:
    ControlDB(url).close()
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE supervisor_meta SET value = :v WHERE key = 'schema_version'"),
            {"v": str(SCHEMA_VERSION + 1)},
        )
    engine.dispose()
    with pytest.raises(ControlDBError, match="newer than this release"):
        ControlDB(url)
