"""W3, W4: the state table a supervisor reads, seen from outside a real workflow process.

W3 watches ``supervisor.*`` keys from another connection while a task
blocks; W4 holds the database locked (or read-only) and checks that a state
write then fails softly and is counted instead of stopping the workflow.
"""

from __future__ import annotations

import logging
import os
import re
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import workflows.state
from workflows import Context, Workflow
from workflows.contract import (
    HEARTBEAT_KEY,
    LAST_ERROR_KEY,
    STATE_TABLE_DDL,
    STATUS_KEY,
    SUMMARY_KEY,
    parse_timestamp,
)
from workflows.state import StateWriter

_WORKFLOW = """
from __future__ import annotations

import time
from pathlib import Path

from workflows import Context, Workflow

HERE = Path(__file__).parent
wf = Workflow("contract")


@wf.task
def block(ctx: Context) -> str:
    ctx.summary("Blocking until the marker appears.")
    while not (HERE / "marker").exists():
        time.sleep(0.02)
    if ctx.input.get("fail"):
        raise RuntimeError("the marker was poisoned")
    return "ok"


@wf.main
def main(ctx: Context) -> None:
    block(ctx)
    ctx.summary("All done.")
"""
_PYTHON_TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00$")


def _wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)


def _read(db: Path, key: str) -> str | None:
    try:
        with sqlite3.connect(db) as conn:
            row = conn.execute("SELECT value FROM state WHERE key = ?", (key,)).fetchone()
    except sqlite3.OperationalError:  # not created yet
        return None
    return row[0] if row else None


def _start(tmp_path: Path, db: Path, input_json: str) -> subprocess.Popen[str]:
    file = tmp_path / "contract.py"
    file.write_text(_WORKFLOW)
    argv = [sys.executable, "-m", "workflows", "run", str(file), "--db", str(db)]
    return subprocess.Popen(
        [*argv, "--input", input_json],
        env=dict(os.environ, WORKFLOW_HEARTBEAT_SECONDS="0.1"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _heartbeats_while_blocked(db: Path) -> list[str]:
    """Three distinct heartbeat values, read while the task blocks."""
    seen: list[str] = []

    def three_distinct() -> bool:
        value = _read(db, HEARTBEAT_KEY)
        if value is not None and value not in seen:
            seen.append(value)
        return len(seen) >= 3

    _wait_until(three_distinct, timeout=3)
    return seen


def test_running_heartbeat_summary_then_done(tmp_path: Path) -> None:
    db = tmp_path / "contract.db"
    proc = _start(tmp_path, db, "{}")
    try:
        _wait_until(lambda: _read(db, SUMMARY_KEY) == "Blocking until the marker appears.")
        assert _read(db, STATUS_KEY) == "running"
        beats = _heartbeats_while_blocked(db)
        (tmp_path / "marker").touch()
        output, _ = proc.communicate(timeout=10)
    finally:
        proc.kill()
    assert proc.returncode == 0, output
    assert all(_PYTHON_TIMESTAMP.match(beat) for beat in beats), beats
    moments = [parse_timestamp(beat) for beat in beats]
    assert moments == sorted(moments)
    assert _read(db, STATUS_KEY) == "done"
    assert _read(db, SUMMARY_KEY) == "All done."
    assert _read(db, LAST_ERROR_KEY) is None


def test_failure_writes_error_and_last_error(tmp_path: Path) -> None:
    db = tmp_path / "contract.db"
    (tmp_path / "marker").touch()
    proc = _start(tmp_path, db, '{"fail": true}')
    output, _ = proc.communicate(timeout=10)
    assert proc.returncode == 1, output
    assert _read(db, STATUS_KEY) == "error"
    error = _read(db, LAST_ERROR_KEY) or ""
    assert "task 'block' failed after 1 attempt: RuntimeError: the marker was poisoned" in error
    assert 'contract.py", line' in error


@pytest.fixture
def fast_busy_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(workflows.state, "BUSY_TIMEOUT_SECONDS", 0.05)


@pytest.fixture
def locked_db(tmp_path: Path, fast_busy_timeout: None) -> Iterator[Path]:
    db = tmp_path / "locked.db"
    StateWriter(db).status("idle")  # a real workflow db, in WAL mode, with the table
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    yield db
    holder.rollback()
    holder.close()


def test_write_to_a_locked_database_fails_softly(
    locked_db: Path, caplog: pytest.LogCaptureFixture
) -> None:
    writer = StateWriter(locked_db)
    with caplog.at_level(logging.WARNING, logger="workflows.state"):
        assert writer.status("running") is False
        assert writer.heartbeat() is False
    assert writer.failures == 2
    assert "supervisor.heartbeat failed (2 so far)" in caplog.text
    writer.close()


def test_writes_land_again_once_the_lock_is_gone(tmp_path: Path, fast_busy_timeout: None) -> None:
    db = tmp_path / "locked.db"
    writer = StateWriter(db)
    assert writer.summary("before")
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    assert writer.summary("during") is False
    holder.rollback()
    holder.close()
    assert writer.summary("after")
    assert (writer.failures, _read(db, SUMMARY_KEY)) == (1, "after")
    writer.close()


def test_workflow_finishes_although_its_state_writes_fail(
    tmp_path: Path, fast_busy_timeout: None, caplog: pytest.LogCaptureFixture
) -> None:
    db = tmp_path / "w4.db"
    wf = Workflow("w4")

    @wf.task
    def hold_lock(ctx: Context) -> bool:
        holder = sqlite3.connect(db, isolation_level=None)
        holder.execute("BEGIN EXCLUSIVE")
        try:
            ctx.summary("nobody can read this")
            ctx.error("nor this")
        finally:
            holder.rollback()
            holder.close()
        return True

    @wf.main
    def main(ctx: Context) -> None:
        hold_lock(ctx)

    result = wf.run(db=db)

    assert result.outcome == "done"
    assert _read(db, STATUS_KEY) == "done"
    assert _read(db, LAST_ERROR_KEY) is None
    assert re.search(r"[2-9] state writes failed during this run", caplog.text)


@pytest.fixture
def read_only_db(tmp_path: Path) -> Iterator[Path]:
    """A database file nobody may write, root included (``chattr +i`` when running as root)."""
    db = tmp_path / "readonly.db"
    with sqlite3.connect(db) as conn:
        conn.execute(STATE_TABLE_DDL)
    if os.geteuid() != 0:
        db.chmod(0o444)
        yield db
        return
    if subprocess.run(["chattr", "+i", str(db)], capture_output=True, check=False).returncode:
        pytest.skip("running as root and chattr +i is unavailable")
    yield db
    subprocess.run(["chattr", "-i", str(db)], check=True)


def test_write_to_a_read_only_database_fails_softly(read_only_db: Path) -> None:
    writer = StateWriter(read_only_db)
    assert writer.status("running") is False
    assert writer.summary("still going") is False
    assert writer.failures == 2
    writer.close()
