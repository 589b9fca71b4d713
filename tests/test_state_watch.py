"""S15: a write to a state table is read because its files changed, not at the next poll.

Real child processes write real SQLite (WAL and rollback journal). With both
polls set to an hour, only the watch can explain an error event; with the
watch refused, or a database whose directory appears after start, the
``error_poll_seconds`` poll still notices; a workflow that only heartbeats is
never taken for hung; a database nothing writes to is closed after a while and
read again when it changes; a read taken while another process commits is taken
again.
"""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psutil
import pytest

from supervisor import statedb, statewatch
from supervisor.bus import Subscription
from supervisor.core import Supervisor
from supervisor.events import ErrorReported, Event
from tests.conditions import wait_until
from tests.supervisor_harness import resolve, running, settings
from workflows import contract

pytestmark = pytest.mark.timeout(60)

HOUR = 3600.0

# Heartbeats every ``every`` s; once the file ``go`` exists, writes each of ``errors``
# as ``supervisor.last_error`` (carrying the time it was written), ``gap`` s apart.
WRITER = r"""
import importlib.util, json, os, sqlite3, sys, time
plan = json.loads(sys.argv[1])
spec = importlib.util.spec_from_file_location("contract", plan["contract"])
contract = importlib.util.module_from_spec(spec)
spec.loader.exec_module(contract)
db = sqlite3.connect(os.environ["WORKFLOW_DB"], timeout=5, isolation_level=None)
db.execute(f"PRAGMA journal_mode={plan['journal']}")
db.execute(contract.STATE_TABLE_DDL)
put = lambda key, value: db.execute(contract.UPSERT_STATE_SQL, (key, value))
put(contract.STATUS_KEY, "running")
errors = list(plan.get("errors", []))
while True:
    put(contract.HEARTBEAT_KEY, contract.format_timestamp())
    if errors and os.path.exists(plan["go"]):
        put(contract.LAST_ERROR_KEY, f"{errors.pop(0)} t={time.time()!r}")
        time.sleep(plan.get("gap", 0.3))
    time.sleep(plan.get("every", 0.05))
"""

# One write, as another process (the workflow, between runs) would make it.
ONE_WRITE = r"""
import importlib.util, sqlite3, sys
spec = importlib.util.spec_from_file_location("contract", sys.argv[1])
contract = importlib.util.module_from_spec(spec)
spec.loader.exec_module(contract)
db = sqlite3.connect(sys.argv[2], timeout=5, isolation_level=None)
db.execute(f"PRAGMA journal_mode={sys.argv[3]}")
db.execute(contract.STATE_TABLE_DDL)
db.execute(contract.UPSERT_STATE_SQL, (sys.argv[4], sys.argv[5]))
db.close()
"""


def writer(tmp_path: Path, name: str, **plan: Any) -> dict[str, Any]:
    """A workflow table running ``WRITER`` with ``plan``."""
    program = tmp_path / "writer.py"
    program.write_text(WRITER, encoding="utf-8")
    full = {"journal": "wal", "contract": contract.__file__, "go": str(tmp_path / "go"), **plan}
    return {"name": name, "command": [sys.executable, str(program), json.dumps(full)]}


def write_in_child(db: Path, key: str, value: str, journal: str = "wal") -> None:
    """``key = value`` in ``db``, written by a child process."""
    argv = [sys.executable, "-c", ONE_WRITE, contract.__file__, str(db), journal, key, value]
    subprocess.run(argv, check=True, timeout=30)


async def wait_running(supervisor: Supervisor, name: str) -> None:
    deadline = time.monotonic() + 20
    while (await supervisor.status(name))[0].state != "running":
        assert time.monotonic() < deadline, f"{name} never came up"
        await asyncio.sleep(0.02)


async def errors_after_go(
    subscription: Subscription, tmp_path: Path, name: str, count: int
) -> list[ErrorReported]:
    """Say go; the next ``count`` error events of ``name``."""
    (tmp_path / "go").touch()
    seen: list[ErrorReported] = []

    async def gather() -> None:
        async for event in subscription:
            if isinstance(event, ErrorReported) and event.workflow == name:
                seen.append(event)
                if len(seen) == count:
                    return

    try:
        await asyncio.wait_for(gather(), 30)
    except TimeoutError:
        raise AssertionError(f"{len(seen)} of {count} errors reported") from None
    return seen


def latencies(events: Sequence[ErrorReported]) -> list[float]:
    """Seconds from each write (the time in its text) to its event."""
    return [event.time.timestamp() - float(event.text.rsplit("t=", 1)[1]) for event in events]


@pytest.mark.parametrize("journal", ["wal", "delete"])
async def test_an_error_is_noticed_through_the_watch_alone(tmp_path: Path, journal: str) -> None:
    conf = settings(tmp_path, error_poll_seconds=HOUR, check_interval_seconds=HOUR)
    flow = writer(tmp_path, "loud", journal=journal, errors=["one", "two", "three"])
    async with running(conf, resolve(tmp_path, conf, flow)) as (sup, sub):
        await wait_running(sup, "loud")
        events = await errors_after_go(sub, tmp_path, "loud", 3)
    assert [event.text.split()[0] for event in events] == ["one", "two", "three"]
    # The polls come once an hour: each write was read because its files changed.
    assert max(latencies(events)) < 5.0


async def test_without_a_watch_the_poll_still_notices(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def refused() -> tuple[object, int]:
        raise OSError(errno.EMFILE, "inotify instances used up")

    monkeypatch.setattr(statewatch, "open_inotify", refused)
    caplog.set_level(logging.WARNING, logger="supervisor")
    conf = settings(tmp_path, error_poll_seconds=0.05, check_interval_seconds=HOUR)
    flow = writer(tmp_path, "polled", errors=["one", "two"])
    async with running(conf, resolve(tmp_path, conf, flow)) as (sup, sub):
        await wait_running(sup, "polled")
        events = await errors_after_go(sub, tmp_path, "polled", 2)
    assert [event.text.split()[0] for event in events] == ["one", "two"]
    assert any("not watched" in record.getMessage() for record in caplog.records)


async def test_a_database_whose_directory_appears_later_is_polled(tmp_path: Path) -> None:
    conf = settings(tmp_path, error_poll_seconds=0.05, check_interval_seconds=HOUR)
    db = tmp_path / "later" / "late.db"  # no such directory yet: nothing to watch
    flow = {"name": "late", "command": ["true"], "autostart": False, "db": str(db)}
    async with running(conf, resolve(tmp_path, conf, flow)) as (_sup, sub):
        db.parent.mkdir()
        write_in_child(db, contract.LAST_ERROR_KEY, "disk full")
        deadline = time.monotonic() + 20
        async for event in sub:
            if event.kind == "error" and event.workflow == "late":
                assert event.detail == "disk full"
                break
            assert time.monotonic() < deadline


async def test_a_database_whose_directory_is_replaced_is_polled_at_once(tmp_path: Path) -> None:
    """The watch of a directory moved away is lost: its workflow is polled from then on,
    within ``error_poll_seconds``, not from the next hang check (an hour here)."""
    conf = settings(tmp_path, error_poll_seconds=0.05, check_interval_seconds=HOUR)
    db = tmp_path / "place" / "moved.db"
    db.parent.mkdir()
    write_in_child(db, contract.STATUS_KEY, "idle")
    flow = {"name": "moved", "command": ["true"], "autostart": False, "db": str(db)}
    async with running(conf, resolve(tmp_path, conf, flow)) as (_sup, sub):
        await asyncio.sleep(0.3)  # the poll loop settles into its long sleep
        db.parent.rename(tmp_path / "place-old")
        db.parent.mkdir()
        write_in_child(db, contract.LAST_ERROR_KEY, "volume remounted")
        async with asyncio.timeout(20):
            async for event in sub:
                if event.kind == "error" and event.workflow == "moved":
                    assert event.detail == "volume remounted"
                    break


async def test_a_workflow_that_only_heartbeats_is_never_taken_for_hung(tmp_path: Path) -> None:
    conf = settings(tmp_path, error_poll_seconds=HOUR, check_interval_seconds=0.1)
    flow = {**writer(tmp_path, "steady", every=0.05), "hang_threshold_seconds": 1.0}
    async with running(conf, resolve(tmp_path, conf, flow)) as (sup, sub):
        seen: list[Event] = []

        async def gather() -> None:
            async for event in sub:
                seen.append(event)

        gathering = asyncio.create_task(gather())
        await wait_running(sup, "steady")
        [status] = await sup.status("steady")
        assert status.started_at is not None
        # Beyond three hang thresholds of heartbeats read, checked every 0.1 s.
        until = status.started_at.timestamp() + 3.0
        deadline = time.monotonic() + 30
        while True:
            [status] = await sup.status("steady")
            if status.heartbeat is not None and status.heartbeat.timestamp() > until:
                break
            assert time.monotonic() < deadline, "the heartbeat never got that far"
            await asyncio.sleep(0.05)
        gathering.cancel()
    assert [event for event in seen if event.kind in ("hung", "restarted", "crashed")] == []
    assert status.state == "running"


def open_paths(prefix: Path) -> list[str]:
    return [f.path for f in psutil.Process().open_files() if f.path.startswith(str(prefix))]


async def test_a_database_left_alone_is_closed_and_read_again_when_it_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(statedb, "IDLE_CLOSE_SECONDS", 0.3)
    db = tmp_path / "quiet.db"
    write_in_child(db, contract.STATUS_KEY, "idle")
    conf = settings(tmp_path, check_interval_seconds=0.1)
    flow = {"name": "quiet", "command": ["true"], "autostart": False}
    async with running(conf, resolve(tmp_path, conf, flow)) as (_sup, sub):
        await wait_until(lambda: open_paths(db) == [], timeout=20)  # nothing changed
        write_in_child(db, contract.LAST_ERROR_KEY, "woke up")
        deadline = time.monotonic() + 20
        async for event in sub:
            if event.kind == "error" and event.workflow == "quiet":
                assert event.detail == "woke up"
                break
            assert time.monotonic() < deadline


# A workflow's connection, open all along (its WAL and -shm stay), and one write.
KEEP_OPEN = r"""
import importlib.util, sqlite3, sys
spec = importlib.util.spec_from_file_location("contract", sys.argv[1])
contract = importlib.util.module_from_spec(spec)
spec.loader.exec_module(contract)
db = sqlite3.connect(sys.argv[2], timeout=5, isolation_level=None)
db.execute("PRAGMA journal_mode=WAL")
db.execute(contract.STATE_TABLE_DDL)
db.execute(contract.UPSERT_STATE_SQL, (contract.STATUS_KEY, "running"))
print("open", flush=True)
sys.stdin.readline()
"""

# Another process's commit, stopped half way: it holds the WAL's write lock, as a
# writer does from its first frame until the commit can be seen.
HOLD_THE_WRITE_LOCK = r"""
import sqlite3, sys
db = sqlite3.connect(sys.argv[1], timeout=5, isolation_level=None)
db.execute("BEGIN IMMEDIATE")
db.execute("INSERT OR REPLACE INTO state (key, value) VALUES ('supervisor.status', 'done')")
print("holding", flush=True)
sys.stdin.readline()
db.execute("COMMIT")
"""


def child(*argv: str) -> subprocess.Popen[str]:
    """A Python child with a pipe each way; its first line read (it is ready)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", *argv], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    assert proc.stdout.readline() != ""
    return proc


def release(proc: subprocess.Popen[str]) -> None:
    """Let it go on (and end); killed if it does not."""
    assert proc.stdin is not None
    try:
        proc.stdin.write("\n")
        proc.stdin.close()
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_a_read_taken_while_another_process_commits_is_taken_again(tmp_path: Path) -> None:
    """The change notice of a commit comes before the commit can be seen: a read then
    must not be the last."""
    db = tmp_path / "busy.db"
    workflow = child(KEEP_OPEN, contract.__file__, str(db))
    reader = statedb.StateReader(db)
    try:
        # The first read opens the connection, and finds SQLite's view of the -shm.
        reader.read_settled(None, 0, force=True)
        quiet = reader.read_settled(None, 0, force=True)
        assert quiet.read is not None
        assert quiet.again is None  # nothing being written: this read is the last
        holder = child(HOLD_THE_WRITE_LOCK, str(db))
        try:
            during = reader.read_settled(None, 0, force=True)
        finally:
            release(holder)
        assert during.read is not None
        assert during.read[1].status == "running"  # the commit could not be seen yet
        assert during.again is not None  # so it is read again soon
        after = reader.read_settled(None, 0, force=True)
        assert after.read is not None
        assert after.read[1].status == "done"
        assert after.again is None
    finally:
        reader.close()
        release(workflow)
