"""Writing the state-table contract from inside a workflow process.

The supervisor judges a workflow only by this table, so the writes must never
be what kills the workflow: a locked or read-only database is logged and
counted, then the workflow goes on. The heartbeat comes from its own thread
with its own connection, so it keeps beating while a task blocks for minutes
on an agent; where the supervisor names a heartbeat file, a beat is a touch
of that file instead, which costs the supervisor nothing until it looks.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path

from workflows.contract import (
    ERRORS_KEPT,
    ERRORS_TABLE_DDL,
    HEARTBEAT_FILE_ENV,
    HEARTBEAT_KEY,
    INSERT_ERROR_SQL,
    LAST_ERROR_KEY,
    STATE_TABLE_DDL,
    STATUS_KEY,
    SUMMARY_KEY,
    TRIM_ERRORS_SQL,
    UPSERT_STATE_SQL,
    Status,
    format_timestamp,
)

log = logging.getLogger(__name__)

# Short, so a database held locked by someone else delays a write by at most this.
BUSY_TIMEOUT_SECONDS = 2.0


def open_state_db(path: Path) -> sqlite3.Connection:
    """Open (creating if needed) a workflow database in WAL mode with the state table."""
    path.parent.mkdir(parents=True, exist_ok=True)
    connection = sqlite3.connect(
        path, timeout=BUSY_TIMEOUT_SECONDS, isolation_level=None, check_same_thread=False
    )
    try:
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=NORMAL")
        connection.execute(STATE_TABLE_DDL)
        connection.execute(ERRORS_TABLE_DDL)
    except sqlite3.Error:
        connection.close()  # the next write opens afresh; don't leak one per failed write
        raise
    return connection


class StateWriter:
    """Best-effort writer of the contract keys; ``failures`` counts writes that did not land."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.failures = 0
        self._lock = threading.Lock()
        self._connection: sqlite3.Connection | None = None

    def _connect(self) -> sqlite3.Connection:
        if self._connection is None:
            self._connection = open_state_db(self.path)
        return self._connection

    def set(self, key: str, value: str) -> bool:
        """Write one key; returns False (and logs) instead of raising when the write fails."""
        return self.set_many({key: value})

    def set_many(self, values: Mapping[str, str]) -> bool:
        """Write several keys in one transaction, so a reader never sees half of them."""
        statements: list[tuple[str, tuple[object, ...]]] = [
            (UPSERT_STATE_SQL, (key, value)) for key, value in values.items()
        ]
        return self._write(", ".join(values), statements)

    def read(self, keys: Sequence[str]) -> dict[str, str]:
        """The stored values of ``keys`` that are set; empty (and logged) when the read fails."""
        marks = ", ".join("?" * len(keys))
        with self._lock:
            try:
                rows = self._connect().execute(
                    f"SELECT key, value FROM state WHERE key IN ({marks})", tuple(keys)
                )
                return dict(rows.fetchall())
            except sqlite3.Error as exc:
                log.warning("state read %s failed: %s", ", ".join(keys), exc)
                return {}

    def _write(self, what: str, statements: list[tuple[str, tuple[object, ...]]]) -> bool:
        """Run ``statements`` in one transaction; a failure is logged and counted, not raised."""
        with self._lock:
            try:
                connection = self._connect()
                with connection:
                    connection.execute("BEGIN")
                    for sql, parameters in statements:
                        connection.execute(sql, parameters)
            except sqlite3.Error as exc:
                self.failures += 1
                log.warning("state write %s failed (%d so far): %s", what, self.failures, exc)
                return False
            return True

    def status(self, status: Status) -> bool:
        return self.set(STATUS_KEY, status)

    def summary(self, text: str) -> bool:
        return self.set(SUMMARY_KEY, text)

    def error(self, text: str) -> bool:
        """Record an error: appended to the error log and set as ``supervisor.last_error``."""
        return self._write(
            LAST_ERROR_KEY,
            [
                (INSERT_ERROR_SQL, (text,)),
                (TRIM_ERRORS_SQL, (ERRORS_KEPT,)),
                (UPSERT_STATE_SQL, (LAST_ERROR_KEY, text)),
            ],
        )

    def heartbeat(self) -> bool:
        """Touch the file the supervisor named (``HEARTBEAT_FILE_ENV``), which it looks at
        only when it needs to; without one, or when it cannot be touched, write the key."""
        named = os.environ.get(HEARTBEAT_FILE_ENV)
        if named:
            try:
                Path(named).touch()
                return True
            except OSError as exc:
                log.warning("heartbeat file %s: %s; writing the state table instead", named, exc)
        return self.set(HEARTBEAT_KEY, format_timestamp())

    def close(self) -> None:
        with self._lock:
            if self._connection is not None:
                self._connection.close()
                self._connection = None


class Heartbeat:
    """A daemon thread that writes ``supervisor.heartbeat`` every ``interval`` seconds."""

    def __init__(self, path: Path, interval: float) -> None:
        self._writer = StateWriter(path)
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="heartbeat", daemon=True)

    @property
    def failures(self) -> int:
        return self._writer.failures

    def start(self) -> None:
        self._writer.heartbeat()
        self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(self._interval):
            self._writer.heartbeat()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        self._writer.close()
