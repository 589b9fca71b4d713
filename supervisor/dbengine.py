"""One way to open the control DB, whatever the SQLAlchemy URL.

SQLite gets WAL, a busy timeout and its parent directory created, so the bot,
the supervisor and a ``status`` command can share the file. Other backends
(Postgres for several hosts) are used as SQLAlchemy configures them.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, MetaData, create_engine, event, func, select
from sqlalchemy.engine import make_url

SQLITE_BUSY_TIMEOUT_MS = 5000
SCHEMA_LOCK = 0x616370_736368  # "acp" "sch": one process at a time creates tables


def make_engine(url: str) -> Engine:
    """Create an engine for ``url``; for SQLite, ready for concurrent readers."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True)
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    return engine


def lock_schema(conn: Connection) -> None:
    """Hold the schema lock until this transaction ends (Postgres; SQLite's writes queue anyway).

    Nodes of a fleet starting together on a new database would otherwise race
    to create the same tables ("relation already exists").
    """
    if conn.dialect.name == "postgresql":
        conn.execute(select(func.pg_advisory_xact_lock(SCHEMA_LOCK)))


def create_tables(target: Engine | Connection, metadata: MetaData) -> None:
    """Create ``metadata``'s missing tables, under the schema lock (and, for threads of
    one process, ``_CREATING``: SQLite has no lock to take before its existence check)."""
    if isinstance(target, Engine):
        with _CREATING, target.begin() as conn:
            create_tables(conn, metadata)
        return
    lock_schema(target)
    metadata.create_all(target)


_CREATING = threading.RLock()
