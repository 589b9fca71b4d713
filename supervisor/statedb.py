"""Reading (and, for pause, writing) a workflow's state table from outside.

The supervisor reads every workflow's database often, so a read is cheap: a
``stat`` of the database and its WAL first, and a query only when they
changed. Every failure (missing file, locked, corrupt, no table, malformed
heartbeat) becomes ``problem`` text on the snapshot, never an exception.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

from workflows.contract import (
    CONTRACT_KEYS,
    HEARTBEAT_KEY,
    LAST_ERROR_KEY,
    PAUSED_KEY,
    STATE_TABLE_DDL,
    STATUS_KEY,
    SUMMARY_KEY,
    UPSERT_STATE_SQL,
    parse_timestamp,
)

# A read must never hold up the event loop for long; a locked database is retried next poll.
READ_TIMEOUT_SECONDS = 0.05
WRITE_TIMEOUT_SECONDS = 2.0
# rowid and updated_at tell a rewrite of the same text from the same value read again:
# INSERT OR REPLACE gives the row a new rowid, an upsert a new updated_at.
_SELECT = (
    f"SELECT *, rowid AS _version FROM state WHERE key IN ({', '.join('?' * len(CONTRACT_KEYS))})"
)

_SELECT_ERRORS = "SELECT id, text FROM supervisor_errors WHERE id > ? ORDER BY id DESC LIMIT ?"
ERRORS_PER_READ = 100

Signature = tuple[int, int, int, int]


@dataclass(frozen=True, slots=True)
class StateSnapshot:
    """The contract keys as last read; ``problem`` says why a read failed."""

    status: str | None = None
    summary: str | None = None
    heartbeat: datetime | None = None
    last_error: str | None = None
    paused: bool = False
    problem: str | None = None
    # The read failed (locked, corrupt): what the workflow wrote is unknown, not absent.
    hidden: bool = False
    # Entries of the optional error log newer than the id asked for, oldest first.
    errors: tuple[tuple[int, str], ...] = ()
    keeps_error_log: bool = False  # the workflow has the error log: only its entries count
    last_error_version: str | None = None  # changes with every write of last_error


def file_signature(path: Path) -> Signature | None:
    """Size and mtime of the database and its WAL: unchanged means nothing was written."""
    try:
        main = os.stat(path)
    except OSError:
        return None
    try:
        wal = os.stat(f"{path}-wal")
        wal_part = (wal.st_mtime_ns, wal.st_size)
    except OSError:
        wal_part = (0, 0)
    return (main.st_mtime_ns, main.st_size, *wal_part)


# Some filesystems stamp mtimes from a coarse clock (a few ms per tick): a same-size
# write in the tick of an earlier read leaves the signature unchanged. A read that
# came this soon after the newest write is repeated once.
CLOCK_TICK_NS = 50_000_000


@dataclass(frozen=True, slots=True)
class Seen:
    """The files' signature at a read, and when that read began."""

    signature: Signature
    read_at_ns: int

    def covers(self, signature: Signature) -> bool:
        """Nothing can have been written since: same files, read well after the last write."""
        newest_write = max(signature[0], signature[2])
        return signature == self.signature and self.read_at_ns - newest_write > CLOCK_TICK_NS


StateRead = tuple[Seen | None, StateSnapshot]


class StateReader:
    """Reads one workflow's state table through a read-only connection kept open.

    Opening SQLite costs about three times the query itself, and the
    supervisor reads every table each time it changes, so the connection is
    kept; it is reopened after any error and when the file is replaced (a new
    inode). Reads may come from worker threads, one at a time.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._connection: sqlite3.Connection | None = None
        self._inode: int | None = None
        self._lock = threading.Lock()

    def read_if_changed(self, seen: Seen | None, errors_after: int) -> StateRead | None:
        """The state and what was seen when reading it; None when nothing changed since ``seen``."""
        started = time.time_ns()
        signature = file_signature(self.path)
        if signature is not None and seen is not None and seen.covers(signature):
            return None
        now_seen = Seen(signature, started) if signature is not None else None
        return now_seen, self.read(errors_after)

    def read(self, errors_after: int = 0) -> StateSnapshot:
        """Read the contract keys, and error-log entries after ``errors_after``.

        Any failure is reported in ``problem``, never raised.
        """
        with self._lock:
            try:
                inode = os.stat(self.path).st_ino
            except OSError:
                self._close()
                return StateSnapshot(problem=f"database not found: {self.path}")
            try:
                connection = self._connect(inode)
                rows, version = _read_keys(connection)
                errors = _read_errors(connection, errors_after)
            except sqlite3.OperationalError as exc:
                self._close()
                text = str(exc)
                if "no such table" in text:
                    return StateSnapshot(problem="database has no state table")
                return StateSnapshot(problem=f"database unreadable: {text}", hidden=True)
            except sqlite3.DatabaseError as exc:
                self._close()
                return StateSnapshot(problem=f"database corrupt: {exc}", hidden=True)
        return replace(
            _snapshot(rows),
            errors=errors or (),
            keeps_error_log=errors is not None,
            last_error_version=version,
        )

    def _connect(self, inode: int) -> sqlite3.Connection:
        if self._connection is None or inode != self._inode:
            self._close()
            uri = f"file:{self.path}?mode=ro"
            self._connection = sqlite3.connect(
                uri, uri=True, timeout=READ_TIMEOUT_SECONDS, check_same_thread=False
            )
            self._inode = inode
        return self._connection

    def _close(self) -> None:
        if self._connection is not None:
            self._connection.close()
        self._connection = None

    def close(self) -> None:
        with self._lock:
            self._close()


def read_state(path: Path, errors_after: int = 0) -> StateSnapshot:
    """One read of a state table, for callers that read it once."""
    reader = StateReader(path)
    try:
        return reader.read(errors_after)
    finally:
        reader.close()


def _read_keys(connection: sqlite3.Connection) -> tuple[dict[str, str], str | None]:
    """The contract keys, and the version of ``last_error`` (rowid and updated_at)."""
    cursor = connection.execute(_SELECT, CONTRACT_KEYS)
    columns = [column[0] for column in cursor.description]
    rows: dict[str, str] = {}
    version = None
    for values in cursor.fetchall():
        row = dict(zip(columns, values, strict=True))
        rows[row["key"]] = row["value"]
        if row["key"] == LAST_ERROR_KEY:
            version = f"{row['_version']}:{row.get('updated_at') or ''}"
    return rows, version


def _read_errors(connection: sqlite3.Connection, after: int) -> tuple[tuple[int, str], ...] | None:
    """The newest error-log entries after ``after`` (at most ``ERRORS_PER_READ``), oldest
    first; None when the workflow keeps no error log (it only sets last_error)."""
    try:
        rows = connection.execute(_SELECT_ERRORS, (after, ERRORS_PER_READ)).fetchall()
    except sqlite3.OperationalError:
        return None
    return tuple((int(row[0]), str(row[1])) for row in reversed(rows))


def _snapshot(rows: dict[str, str]) -> StateSnapshot:
    problem = None
    heartbeat = None
    raw = rows.get(HEARTBEAT_KEY)
    if raw is not None:
        try:
            heartbeat = parse_timestamp(str(raw))
        except (ValueError, TypeError):
            problem = f"malformed heartbeat: {str(raw)[:60]!r}"
    return StateSnapshot(
        status=_text(rows.get(STATUS_KEY)),
        summary=_text(rows.get(SUMMARY_KEY)),
        heartbeat=heartbeat,
        last_error=_text(rows.get(LAST_ERROR_KEY)),
        paused=str(rows.get(PAUSED_KEY, "")).strip().lower() == "true",
        problem=problem,
    )


def _text(value: object) -> str | None:
    return None if value is None else str(value)


def write_paused(path: Path, paused: bool) -> str | None:
    """Set or clear ``supervisor.paused`` in the workflow's own state; returns a problem or None."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        connection = sqlite3.connect(path, timeout=WRITE_TIMEOUT_SECONDS, isolation_level=None)
        try:
            connection.execute(STATE_TABLE_DDL)
            if paused:
                connection.execute(UPSERT_STATE_SQL, (PAUSED_KEY, "true"))
            else:
                connection.execute("DELETE FROM state WHERE key = ?", (PAUSED_KEY,))
        finally:
            connection.close()
    except (sqlite3.Error, OSError) as exc:
        return f"could not write {PAUSED_KEY}: {exc}"
    return None
