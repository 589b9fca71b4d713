"""``/healthz`` and ``/readyz``: is the node alive, and has it started its workflows?

Alive means two things, each checked where it can be seen without waiting
on it:

- **the event loop turns**: the loop stamps ``beat`` every second; a stamp
  older than ``LOOP_STALE_SECONDS`` is a stuck loop (a blocking call on it,
  a runaway task), which also stops alerts, commands and the watchdog;
- **the control DB accepts writes**: the observer's DB thread takes the
  write lock and lets it go every couple of seconds (``DbProbe``); a probe
  that fails, or has not answered for ``PROBE_STALE_SECONDS``, is a DB that
  the supervisor's event log and the outbox cannot write either.

Each answer is computed from those stamps when asked, in the HTTP thread.
What it does not promise: a DB that takes writes slower than the probe's
wait (``PROBE_WAIT_SECONDS``) but faster than the supervisor's busy timeout
is reported unhealthy although the writes still get through, late.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import make_url

LOOP_STALE_SECONDS = 5.0
PROBE_WAIT_SECONDS = 2.0  # how long a probe waits for the write lock
PROBE_STALE_SECONDS = 6.0  # a probe unanswered this long (a hung connection) is a failure
OK, UNAVAILABLE = 200, 503


@dataclass(frozen=True, slots=True)
class Answer:
    """An HTTP status and a one-line body saying why."""

    status: int
    body: str


class DbProbe:
    """Does the control DB take a write now? Blocking: run it on a thread of its own.

    SQLite: ``BEGIN IMMEDIATE`` takes the write lock without writing, then
    ``ROLLBACK``; the file must exist (it is never created here). Postgres:
    ``SELECT txid_current()``, which a read-only server (a standby) refuses.
    """

    def __init__(self, url: str, engine: sa.Engine) -> None:
        parsed = make_url(url)
        self._engine = engine
        self._sqlite: str | None = None
        if parsed.get_backend_name() == "sqlite":
            database = parsed.database or ":memory:"
            self._sqlite = database if database == ":memory:" else str(Path(database).expanduser())

    def __call__(self) -> str | None:
        """None when a write would go through, else why not (one line)."""
        try:
            if self._sqlite is not None:
                self._sqlite_probe(self._sqlite)
            else:
                with self._engine.connect() as conn:
                    conn.execute(sa.text("SELECT txid_current()"))
                    conn.rollback()
        except Exception as exc:  # whatever stops a write is the answer, not a crash
            return _one_line(exc)
        return None

    @staticmethod
    def _sqlite_probe(path: str) -> None:
        if path == ":memory:":
            return
        uri = f"{Path(path).resolve().as_uri()}?mode=rw"
        db = sqlite3.connect(uri, uri=True, timeout=PROBE_WAIT_SECONDS, isolation_level=None)
        try:
            db.execute("BEGIN IMMEDIATE")
            db.execute("ROLLBACK")
        finally:
            db.close()


def _one_line(exc: Exception) -> str:
    if isinstance(exc, sa.exc.DBAPIError) and exc.orig is not None:
        exc = exc.orig  # the driver's words, without SQLAlchemy's SQL and links
    return " ".join(str(exc).split()) or type(exc).__name__


class Health:
    """The stamps ``/healthz`` and ``/readyz`` are answered from; thread-safe."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._beat: float | None = None
        self._probing_since: float | None = None
        self._db_problem: str | None = "not checked yet"
        self._ready = False
        self._stopping = False

    def beat(self) -> None:
        """The event loop turned (called from it every second)."""
        with self._lock:
            self._beat = self._clock()

    def probing(self) -> None:
        with self._lock:
            self._probing_since = self._clock()

    def probed(self, problem: str | None) -> None:
        with self._lock:
            self._probing_since = None
            self._db_problem = problem

    def ready(self, ready: bool = True) -> None:
        """The workflows are started (True), or being stopped (False)."""
        with self._lock:
            self._ready = ready
            self._stopping = self._stopping or not ready

    def healthz(self) -> Answer:
        now = self._clock()
        with self._lock:
            beat, since, problem = self._beat, self._probing_since, self._db_problem
        if beat is None:
            return Answer(UNAVAILABLE, "event loop not turning yet")
        if now - beat > LOOP_STALE_SECONDS:
            return Answer(UNAVAILABLE, f"event loop stuck: no turn for {now - beat:.0f}s")
        if since is not None and now - since > PROBE_STALE_SECONDS:
            return Answer(
                UNAVAILABLE, f"control DB does not answer: a write probe waits {now - since:.0f}s"
            )
        if problem is not None:
            return Answer(UNAVAILABLE, f"control DB does not accept writes: {problem}")
        return Answer(OK, "ok")

    def readyz(self) -> Answer:
        with self._lock:
            ready, stopping = self._ready, self._stopping
        if ready:
            return Answer(OK, "ready")
        why = "stopping" if stopping else "starting: the workflows are not started yet"
        return Answer(UNAVAILABLE, why)
