"""Reading (and, for pause, writing) a workflow's state table from outside.

The supervisor reads every workflow's database often, so a read is cheap: a
``stat`` of the database and its WAL first, and a query only when they
changed. Every failure (missing file, locked, corrupt, no table, malformed
heartbeat) becomes ``problem`` text on the snapshot, never an exception.
"""

from __future__ import annotations

import fcntl
import math
import os
import sqlite3
import struct
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import NamedTuple

from workflows.contract import (
    CONTRACT_KEYS,
    COST_KEY,
    HEARTBEAT_KEY,
    INPUT_TOKENS_KEY,
    LAST_ERROR_KEY,
    OUTPUT_TOKENS_KEY,
    PAUSED_KEY,
    STATE_TABLE_DDL,
    STATUS_KEY,
    SUMMARY_KEY,
    UPSERT_STATE_SQL,
    USAGE_KEYS,
    parse_timestamp,
)
from workflows.usage import Usage  # the workflows' own: what their agents used in a run

# A read must never hold up the event loop for long; a locked database is retried next poll.
READ_TIMEOUT_SECONDS = 0.05
WRITE_TIMEOUT_SECONDS = 2.0
# rowid and updated_at tell a rewrite of the same text from the same value read again:
# INSERT OR REPLACE gives the row a new rowid, an upsert a new updated_at (a writer in
# another language may define the table without it: then NULL is read in its place).
# One statement per read: the last column says, in the same step, whether the error
# log exists (a failed prepare of a query on it costs as much as the read) or, once it
# is known to, its newest id (the log is queried only when that is new). The contract
# keys share a prefix, and the agents' usage keys another: two index ranges, cheaper
# than probing eight keys.
_PREFIX, _USAGE_PREFIX = "supervisor.", "agent."
assert all(key.startswith(_PREFIX) for key in CONTRACT_KEYS)
assert all(key.startswith(_USAGE_PREFIX) for key in USAGE_KEYS)


def _range(prefix: str) -> tuple[str, str]:
    return prefix, prefix[:-1] + chr(ord(prefix[-1]) + 1)


_KEY_RANGE = (*_range(_PREFIX), *_range(_USAGE_PREFIX))
_CONTRACT = frozenset(CONTRACT_KEYS + USAGE_KEYS)
_HAS_LOG = (
    "(SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'supervisor_errors')"
)
_NEWEST = "(SELECT max(id) FROM supervisor_errors)"
_SELECTS = {
    (with_log, stamped): (
        f"SELECT key, value, rowid, {'updated_at' if stamped else 'NULL'}, "
        f"{_NEWEST if with_log else _HAS_LOG} FROM state "
        "WHERE (key >= ? AND key < ?) OR (key >= ? AND key < ?)"
    )
    for with_log in (False, True)
    for stamped in (False, True)
}

_SELECT_ERRORS = "SELECT id, text FROM supervisor_errors WHERE id > ? ORDER BY id DESC LIMIT ?"
ERRORS_PER_READ = 100
# A reader whose database has not changed for this long closes its connection (3
# descriptors in WAL mode: the file, -wal and -shm); the next change reopens it.
IDLE_CLOSE_SECONDS = 60.0
# The wal-index header's two copies (sqlite.org/walformat.html, "The WAL-Index Header":
# iVersion, unused, iChange, isInit, ... in machine byte order), and the WAL write lock,
# the first of the lock bytes after the header and the checkpoint information.
_INDEX_HEADER = struct.Struct("=IIIB")
_INDEX_HEADER_BYTES = 96
_WAL_INDEX_VERSION = 3007000
_WRITE_LOCK_BYTE = 120
# struct flock on 64-bit Linux (where alone the probe runs: _PROBING)
_FLOCK = struct.Struct("hhqqi4x")
_WRITE_LOCK_TEST = _FLOCK.pack(fcntl.F_RDLCK, os.SEEK_SET, _WRITE_LOCK_BYTE, 1, 0)
_PROBING = sys.platform.startswith("linux") and struct.calcsize("P") == 8
# A commit still being made when a watched table was read: read it again this soon.
RETRY_NS = 10_000_000

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
    usage: Usage | None = None  # None: the workflow records no usage (or wrote nonsense)
    # The reader's count of its reads when this one was taken: reads of one database
    # are taken one at a time, so a larger number saw the database later.
    number: int = field(default=0, compare=False, repr=False)


def file_signature(path: Path) -> Signature | None:
    """Size and mtime of the database and its WAL: unchanged means nothing was written."""
    stat = _stat_files(path, f"{path}-wal")
    return None if stat is None else stat[0]


def _stat_files(path: Path | str, wal_path: str) -> tuple[Signature, int] | None:
    """The files' signature and the database's inode (a new one: the file was replaced)."""
    try:
        main = os.stat(path)
    except OSError:
        return None
    try:
        wal = os.stat(wal_path)
        wal_part = (wal.st_mtime_ns, wal.st_size)
    except OSError:
        wal_part = (0, 0)
    return (main.st_mtime_ns, main.st_size, *wal_part), main.st_ino


# Some filesystems stamp mtimes from a coarse clock (a few ms per tick): a same-size
# write in the tick of an earlier read leaves the signature unchanged (and in WAL mode
# the size rarely changes: after a checkpoint the WAL is rewritten in place). And a
# commit becomes visible only after its frames are written (and synced): a read that
# soon after may not see it yet. A read that came this soon after the newest write is
# repeated once; a watched table is read only once its newest write is this old.
CLOCK_TICK_NS = 50_000_000


@dataclass(frozen=True, slots=True)
class Seen:
    """The files' signature at a read, and when that read began."""

    signature: Signature
    read_at_ns: int

    def covers(self, signature: Signature, *, watched: bool = False) -> bool:
        """Nothing can have been written since: same files, read well after the last write.

        ``watched``: the files are watched (``supervisor.statewatch``), so a write after
        this read, in the same clock tick or not, has a change of its own coming; the
        same signature is then enough.
        """
        if signature != self.signature:
            return False
        newest_write = max(signature[0], signature[2])
        return watched or self.read_at_ns - newest_write > CLOCK_TICK_NS


StateRead = tuple[Seen | None, StateSnapshot]


class Settled(NamedTuple):
    """What ``StateReader.read_settled`` did: the read taken (None: none), and when
    (``time.time_ns``) to read again, if ever; ``settling``: that is when the newest
    write will be CLOCK_TICK_NS old (else: a commit was being made)."""

    read: StateRead | None
    again: int | None = None
    settling: bool = False


class StateReader:
    """Reads one workflow's state table through a read-only connection kept open.

    Opening SQLite costs about three times the query itself, and the
    supervisor reads every table each time it changes, so the connection is
    kept while the table changes; it is reopened after any error and when the
    file is replaced (a new inode), and closed once nothing has changed for
    ``IDLE_CLOSE_SECONDS`` (a stopped workflow then holds no descriptor for its
    database). Reads may come from worker threads, one at a time.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._name = str(path)
        self._wal = f"{path}-wal"
        self._connection: sqlite3.Connection | None = None
        self._inode: int | None = None
        # Whether the connection's database has the error log: None until a read says.
        self._error_log: bool | None = None
        self._stamped = True  # the table has updated_at (the contract's DDL has)
        self._shm_fd: int | None = None  # SQLite's descriptor of the -shm (_find_shm)
        self._shm_searched = False
        self._changed_at = time.monotonic()  # the last read that found the files changed
        self._reads = 0
        self._lock = threading.Lock()

    def read_if_changed(
        self, seen: Seen | None, errors_after: int, *, watched: bool = False
    ) -> StateRead | None:
        """The state and what was seen when reading it; None when nothing changed since ``seen``.

        ``watched`` as for ``Seen.covers``.
        """
        started = time.time_ns()
        stat = _stat_files(self._name, self._wal)
        if stat is None:
            return None, self._read(None, errors_after)
        signature, inode = stat
        if seen is not None and seen.covers(signature, watched=watched):
            self.close_if_idle()
            return None
        self._changed_at = time.monotonic()
        return Seen(signature, started), self._read(inode, errors_after)

    def read_settled(self, seen: Seen | None, errors_after: int, *, force: bool = False) -> Settled:
        """For a watched table that changed: the read, and when to read it again.

        A change notice comes when a commit's frames are written to the WAL,
        but the commit becomes visible only after the writer has synced them
        and updated the wal-index (a memory map, which no notice reports): a
        read in between misses it, and nothing would say so. So a read of a
        WAL database is checked against the wal-index header and the WAL's
        write lock (``_commit_pending``), and a commit that may have been made
        meanwhile asks for another read soon. Where that cannot be told (a
        rollback journal, the first read on a connection, not 64-bit Linux)
        the table is read only once its newest write is ``CLOCK_TICK_NS`` old
        (with ``force`` at once, and again then).
        """
        started = time.time_ns()
        stat = _stat_files(self._name, self._wal)
        if stat is None:
            return Settled((None, self._read(None, errors_after)))
        signature, inode = stat
        if seen is not None and seen.covers(signature):
            return Settled(None)
        settled = max(signature[0], signature[2]) + CLOCK_TICK_NS
        early = settled > started
        with self._lock:
            probing = signature[3] > 0 and self._shm_fd is not None and inode == self._inode
            if early and not probing and not force:
                return Settled(None, settled, settling=True)
            self._changed_at = time.monotonic()
            before = self._index_header() if probing else None
            snapshot = self._read_locked(inode, errors_after)
            pending = self._commit_pending(before) if probing else None
            if (
                _PROBING
                and signature[3] > 0
                and not self._shm_searched
                and self._connection is not None
            ):
                self._find_shm()
        read = (Seen(signature, started), snapshot)
        if pending is None:
            return Settled(read, settled if early else None, settling=early)
        return Settled(read, time.time_ns() + RETRY_NS if pending else None)

    def _index_header(self) -> bytes | None:
        """Both copies of the wal-index header, through SQLite's own descriptor."""
        if self._shm_fd is None:
            return None
        try:
            header = os.pread(self._shm_fd, _INDEX_HEADER_BYTES, 0)
        except OSError:
            return None
        return header if len(header) == _INDEX_HEADER_BYTES else None

    def _commit_pending(self, before: bytes | None) -> bool | None:
        """Whether a commit may have been made around the read just taken; None: cannot
        tell (sqlite.org/walformat.html). No: the wal-index header (a commit's last
        step) did not change during the read, and no other process holds the WAL's
        write lock, which a writer keeps from its first frame until that step."""
        if before is None or self._shm_fd is None:
            return None
        try:
            lock = fcntl.fcntl(self._shm_fd, fcntl.F_GETLK, _WRITE_LOCK_TEST)  # takes nothing
        except OSError:
            return None
        after = self._index_header()
        if after is None:
            return None
        version, _, _, is_init = _INDEX_HEADER.unpack_from(after)
        if version != _WAL_INDEX_VERSION or not is_init:
            self._shm_fd = None  # not a wal-index after all: stop trusting that descriptor
            return None
        half = _INDEX_HEADER_BYTES // 2
        if before != after or after[:half] != after[half:]:
            return True  # a commit landed during the read, or is landing now
        return bool(_FLOCK.unpack(lock)[0] != fcntl.F_UNLCK)

    def _find_shm(self) -> None:
        """SQLite's descriptor of the -shm file (never one of our own: closing that
        would drop SQLite's locks on the file), looked up once per connection."""
        self._shm_searched = True
        self._shm_fd = _sqlite_shm_fd(os.path.realpath(self._name) + "-shm")

    def read(self, errors_after: int = 0) -> StateSnapshot:
        """Read the contract keys, and error-log entries after ``errors_after``.

        Any failure is reported in ``problem``, never raised.
        """
        try:
            inode = os.stat(self._name).st_ino
        except OSError:
            inode = None
        return self._read(inode, errors_after)

    def _read(self, inode: int | None, errors_after: int) -> StateSnapshot:
        with self._lock:
            return self._read_locked(inode, errors_after)

    def _read_locked(self, inode: int | None, errors_after: int) -> StateSnapshot:
        self._reads += 1
        number = self._reads
        if inode is None:
            self._close()
            return StateSnapshot(problem=f"database not found: {self.path}", number=number)
        try:
            connection = self._connect(inode)
            return self._query(connection, errors_after, number)
        except sqlite3.OperationalError as exc:
            self._close()
            text = str(exc)
            if "no such table" in text:
                return StateSnapshot(problem="database has no state table", number=number)
            problem = f"database unreadable: {text}"
            return StateSnapshot(problem=problem, hidden=True, number=number)
        except sqlite3.DatabaseError as exc:
            self._close()
            problem = f"database corrupt: {exc}"
            return StateSnapshot(problem=problem, hidden=True, number=number)

    def _query(
        self, connection: sqlite3.Connection, errors_after: int, number: int
    ) -> StateSnapshot:
        """One statement in the common case (see ``_SELECTS``); the error log's entries
        only when it has one newer than ``errors_after``."""
        while True:
            with_log, stamped = self._error_log is True, self._stamped
            try:
                cursor = connection.execute(_SELECTS[with_log, stamped], _KEY_RANGE)
                break
            except sqlite3.OperationalError as exc:
                text = str(exc)
                if with_log and "supervisor_errors" in text:
                    self._error_log = False  # the log was dropped: probe for it again
                elif stamped and "updated_at" in text:
                    self._stamped = False  # a table of the writer's own making
                else:
                    raise
        rows, version, log = _read_keys(cursor)
        if log is None:  # no contract key written yet: the log's existence is unknown
            errors = _read_errors(connection, errors_after)
        elif with_log or log:
            self._error_log = True
            # Probing (the log just appeared) gives no newest id: read it.
            newest = log if with_log else errors_after + 1
            errors = _read_errors(connection, errors_after) if newest > errors_after else ()
        else:
            self._error_log = False
            errors = None
        return _snapshot(rows, errors, version, number)

    def _connect(self, inode: int) -> sqlite3.Connection:
        if self._connection is None or inode != self._inode:
            self._close()
            uri = f"file:{self.path}?mode=ro"
            self._connection = sqlite3.connect(
                uri, uri=True, timeout=READ_TIMEOUT_SECONDS, check_same_thread=False
            )
            self._inode = inode
        return self._connection

    def close_if_idle(self) -> None:
        """Close the connection once nothing has changed for ``IDLE_CLOSE_SECONDS``."""
        if self._connection is None or time.monotonic() - self._changed_at < IDLE_CLOSE_SECONDS:
            return
        with self._lock:
            self._close()

    def _close(self) -> None:
        if self._connection is not None:
            self._connection.close()
        self._connection = None
        self._error_log = None
        self._stamped = True
        self._shm_fd, self._shm_searched = None, False  # SQLite closed it with its connection

    def close(self) -> None:
        with self._lock:
            self._close()


_shm_lock = threading.Lock()
_shm_fds: dict[str, int] = {}  # the -shm files SQLite has open in this process: a descriptor


def _sqlite_shm_fd(target: str) -> int | None:
    """A descriptor SQLite holds on ``target``, from /proc/self/fd (one scan finds every
    workflow's; a later miss scans again); None where there is no /proc."""
    try:
        wanted = os.stat(target)
    except OSError:
        return None
    with _shm_lock:
        for attempt in range(2):
            fd = _shm_fds.get(target)
            try:
                if fd is not None and os.path.samestat(os.fstat(fd), wanted):
                    return fd
            except OSError:
                pass
            if attempt:
                return None
            _shm_fds.clear()
            try:
                names = os.listdir("/proc/self/fd")
            except OSError:
                return None
            for name in names:
                try:
                    link = os.readlink(f"/proc/self/fd/{name}")
                except OSError:
                    continue
                if link.endswith("-shm"):
                    _shm_fds[link] = int(name)
    return None


def read_state(path: Path, errors_after: int = 0) -> StateSnapshot:
    """One read of a state table, for callers that read it once."""
    reader = StateReader(path)
    try:
        return reader.read(errors_after)
    finally:
        reader.close()


def _read_keys(cursor: sqlite3.Cursor) -> tuple[dict[str, str], str | None, int | None]:
    """The contract keys, the version of ``last_error`` (rowid and updated_at), and the
    last column (None when no key was there to carry it)."""
    rows: dict[str, str] = {}
    version = None
    log: int | None = None
    for key, value, rowid, stamp, log_column in cursor.fetchall():
        log = log_column or 0
        if key not in _CONTRACT:
            continue  # another key of the workflow's that happens to share the prefix
        rows[key] = value
        if key == LAST_ERROR_KEY:
            version = f"{rowid}:{stamp or ''}"
    return rows, version, log


def _read_errors(connection: sqlite3.Connection, after: int) -> tuple[tuple[int, str], ...] | None:
    """The newest error-log entries after ``after`` (at most ``ERRORS_PER_READ``), oldest
    first; None when the workflow keeps no error log (it only sets last_error)."""
    try:
        rows = connection.execute(_SELECT_ERRORS, (after, ERRORS_PER_READ)).fetchall()
    except sqlite3.OperationalError:
        return None
    return tuple((int(row[0]), str(row[1])) for row in reversed(rows))


def _snapshot(
    rows: dict[str, str],
    errors: tuple[tuple[int, str], ...] | None,
    version: str | None,
    number: int,
) -> StateSnapshot:
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
        errors=errors or (),
        keeps_error_log=errors is not None,
        last_error_version=version,
        usage=_usage(rows),
        number=number,
    )


def _usage(rows: dict[str, str]) -> Usage | None:
    """The usage keys, when the cost is there and every key is a number (else None:
    a value that is not a number is no spend to count)."""
    if COST_KEY not in rows:
        return None
    try:
        cost = float(rows[COST_KEY])
        tokens = [int(float(rows.get(key) or 0)) for key in (INPUT_TOKENS_KEY, OUTPUT_TOKENS_KEY)]
    except (ValueError, OverflowError):
        return None
    if not math.isfinite(cost) or cost < 0 or min(tokens) < 0:
        return None
    return Usage(tokens[0], tokens[1], cost)


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
