"""W1, W2, W5: a run survives kill -9 and SIGTERM, and notices code that changed under it.

Every test drives a real ``python -m workflows run`` child process over a real
SQLite file, with a workflow file written into the test's directory whose
tasks leave a line in ``effects.txt`` each time their body runs.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from workflows.contract import LAST_ERROR_KEY, STATUS_KEY

_PRELUDE = """
from __future__ import annotations

import time
from pathlib import Path

from workflows import Context, Workflow

HERE = Path(__file__).parent
wf = Workflow("durable")


def note(line: str) -> None:
    with (HERE / "effects.txt").open("a") as effects:
        effects.write(line + "\\n")


def wait_for_marker() -> None:
    while not (HERE / "marker").exists():
        time.sleep(0.02)
"""

_BLOCKING = (
    _PRELUDE
    + """

@wf.task
def a(ctx: Context) -> str:
    note("a")
    return "A"


@wf.task
def b(ctx: Context, previous: str) -> str:
    note("b")
    wait_for_marker()
    return previous + "B"


@wf.task
def c(ctx: Context, previous: str) -> str:
    note("c")
    return previous + "C"


@wf.main
def main(ctx: Context) -> None:
    print("result", c(ctx, b(ctx, a(ctx))), flush=True)
"""
)

_FAILING_B = (
    _PRELUDE
    + """

@wf.task
def a(ctx: Context) -> str:
    note("a")
    return "A"


@wf.task
def b(ctx: Context, previous: str) -> str:
    note("b")
    if not (HERE / "marker").exists():
        raise RuntimeError("b needs the marker")
    return previous + "B"


@wf.task
def c(ctx: Context) -> str:
    note("c")
    return "C"


@wf.main
def main(ctx: Context) -> None:
    print("result", b(ctx, a(ctx)), flush=True)
"""
)

# The same tasks, but call #0 is now ``c`` where the stored run recorded ``a``.
_CHANGED_PATH = _FAILING_B.replace(
    'print("result", b(ctx, a(ctx)), flush=True)', 'print("result", c(ctx), flush=True)'
)


def _env() -> dict[str, str]:
    return dict(os.environ, WORKFLOW_HEARTBEAT_SECONDS="0.1", PYTHONDONTWRITEBYTECODE="1")


def _argv(file: Path, db: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "workflows", "run", str(file), "--db", str(db), *extra]


def _start(file: Path, db: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        _argv(file, db),
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _run(file: Path, db: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        _argv(file, db, *extra), env=_env(), capture_output=True, text=True, timeout=20, check=False
    )


def _wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)


def _effects(directory: Path) -> list[str]:
    path = directory / "effects.txt"
    return path.read_text().split() if path.exists() else []


def _runs(db: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(db) as conn:
        return conn.execute(
            "SELECT run_id, status FROM workflow_runs ORDER BY started_at"
        ).fetchall()


def _state(db: Path, key: str) -> str | None:
    with sqlite3.connect(db) as conn:
        row = conn.execute("SELECT value FROM state WHERE key = ?", (key,)).fetchone()
    return row[0] if row else None


@pytest.fixture
def blocking(tmp_path: Path) -> Path:
    file = tmp_path / "durable.py"
    file.write_text(_BLOCKING)
    return file


def test_completed_task_is_not_rerun_after_kill_9(tmp_path: Path, blocking: Path) -> None:
    db = tmp_path / "durable.db"
    proc = _start(blocking, db)
    try:
        _wait_until(lambda: "b" in _effects(tmp_path))
        [(run_id, _)] = _runs(db)
    finally:
        proc.kill()
        proc.communicate(timeout=5)
    assert proc.returncode == -signal.SIGKILL
    (tmp_path / "marker").touch()

    second = _run(blocking, db)

    assert second.returncode == 0, second.stdout + second.stderr
    assert _effects(tmp_path) == ["a", "b", "b", "c"]
    assert _runs(db) == [(run_id, "done")]
    assert f"run {run_id} resumed" in second.stdout
    assert "result ABC" in second.stdout


def test_new_run_starts_fresh(tmp_path: Path) -> None:
    file = tmp_path / "durable.py"
    file.write_text(_FAILING_B)
    db = tmp_path / "durable.db"
    assert _run(file, db).returncode == 1
    (tmp_path / "marker").touch()

    fresh = _run(file, db, "--new-run")

    assert fresh.returncode == 0, fresh.stdout + fresh.stderr
    assert _effects(tmp_path) == ["a", "b", "a", "b"]
    assert [status for _, status in _runs(db)] == ["failed", "done"]


def test_changed_code_path_stops_with_both_task_names(tmp_path: Path) -> None:
    file = tmp_path / "durable.py"
    file.write_text(_FAILING_B)
    db = tmp_path / "durable.db"
    assert _run(file, db).returncode == 1
    file.write_text(_CHANGED_PATH)

    changed = _run(file, db)

    assert changed.returncode == 1
    error = _state(db, LAST_ERROR_KEY) or ""
    assert "'a'" in error
    assert "'c'" in error
    assert "--new-run" in error
    assert _state(db, STATUS_KEY) == "error"
    assert "result A" not in changed.stdout  # c never returned a's stored output
    assert _effects(tmp_path) == ["a", "b"]


def test_sigterm_leaves_the_run_resumable(tmp_path: Path, blocking: Path) -> None:
    db = tmp_path / "durable.db"
    proc = _start(blocking, db)
    try:
        _wait_until(lambda: "b" in _effects(tmp_path))
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=5)
    finally:
        proc.kill()
    assert proc.returncode == 143
    assert _state(db, STATUS_KEY) == "idle"
    [(run_id, status)] = _runs(db)
    assert status == "interrupted"
    (tmp_path / "marker").touch()

    second = _run(blocking, db)

    assert second.returncode == 0, second.stdout + second.stderr
    assert _effects(tmp_path) == ["a", "b", "b", "c"]
    assert _runs(db) == [(run_id, "done")]
    assert _state(db, STATUS_KEY) == "done"
