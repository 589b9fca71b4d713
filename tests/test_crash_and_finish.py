"""S3: an exit is reported as it happens: finished for 0, crashed with code/signal and log tail."""

from __future__ import annotations

import os
import shutil
import signal
import time
from pathlib import Path

import pytest

from supervisor.events import Crashed, Finished
from tests.supervisor_harness import live_group, resolve, running, settings, table, wait_for_event

pytestmark = pytest.mark.timeout(15)

ROOT = Path(__file__).resolve().parents[1]


async def test_exit_zero_is_finished_and_not_restarted(tmp_path: Path) -> None:
    conf = settings(tmp_path)
    flow = table(tmp_path, "ok", plan={"beats": 3, "final": {"supervisor.status": "done"}})
    async with running(conf, resolve(tmp_path, conf, flow)) as (sup, sub):
        event = await wait_for_event(sub, "finished", "ok")
        assert isinstance(event, Finished)
        assert event.note is None
        assert event.summary == "testing"
        [status] = await sup.status("ok")
        assert status.state == "finished"
        assert status.exit_code == 0
        assert status.pid is None


async def test_exit_zero_while_status_says_running_is_noted(tmp_path: Path) -> None:
    conf = settings(tmp_path)
    flow = table(tmp_path, "liar", plan={"beats": 2})
    async with running(conf, resolve(tmp_path, conf, flow)) as (_sup, sub):
        event = await wait_for_event(sub, "finished", "liar")
        assert isinstance(event, Finished)
        assert event.note is not None
        assert "running" in event.note


async def test_nonzero_exit_is_a_crash_with_code_and_log_tail(tmp_path: Path) -> None:
    conf = settings(tmp_path)
    lines = [f"line {n}" for n in range(30)]
    flow = table(tmp_path, "bad", restart="never", plan={"beats": 2, "exit": 3, "print": lines})
    async with running(conf, resolve(tmp_path, conf, flow)) as (sup, sub):
        event = await wait_for_event(sub, "crashed", "bad")
        assert isinstance(event, Crashed)
        assert event.exit_code == 3
        assert event.signal is None
        assert not event.will_restart
        assert event.detail == "exit code 3"
        assert len(event.log_tail) == 10  # its own last lines, without the supervisor's marks
        assert event.log_tail[-1].startswith("exiting at")
        assert "line 29" in event.log_tail
        assert not any("supervisor:" in line for line in event.log_tail)
        [status] = await sup.status("bad")
        assert status.state == "crashed"
        assert status.exit_code == 3


async def test_crash_is_reported_within_half_a_second(tmp_path: Path) -> None:
    conf = settings(tmp_path)
    flow = table(tmp_path, "quick", restart="never", plan={"beats": 1, "exit": 1})
    async with running(conf, resolve(tmp_path, conf, flow)) as (sup, sub):
        event = await wait_for_event(sub, "crashed", "quick")
        exited = max(
            float(line.split()[-1])
            for line in await sup.tail("quick", 50)
            if line.startswith("exiting at")
        )
        assert event.time.timestamp() - exited < 0.5


async def test_death_by_signal_names_the_signal(tmp_path: Path) -> None:
    conf = settings(tmp_path)
    flow = table(tmp_path, "victim", restart="never")
    async with running(conf, resolve(tmp_path, conf, flow)) as (sup, sub):
        started = await wait_for_event(sub, "started", "victim")
        os.kill(started.pid, signal.SIGKILL)  # type: ignore[attr-defined]
        event = await wait_for_event(sub, "crashed", "victim")
        assert isinstance(event, Crashed)
        assert event.signal == "SIGKILL"
        assert event.exit_code is None
        assert event.detail == "killed by SIGKILL"
        [status] = await sup.status("victim")
        assert status.state == "crashed"


async def test_exit_is_reported_although_a_child_keeps_the_output_open(tmp_path: Path) -> None:
    conf = settings(tmp_path)
    flow = table(tmp_path, "parent", restart="never", plan={"child": True, "beats": 2, "exit": 4})
    async with running(conf, resolve(tmp_path, conf, flow)) as (_sup, sub):
        started = await wait_for_event(sub, "started", "parent")
        event = await wait_for_event(sub, "crashed", "parent", timeout=4)
        assert isinstance(event, Crashed)
        assert event.exit_code == 4
        assert live_group(started.pid) == []  # type: ignore[attr-defined]


@pytest.mark.skipif(shutil.which("sqlite3") is None, reason="needs the sqlite3 CLI")
@pytest.mark.timeout(60)
async def test_shell_workflow_writing_with_the_sqlite3_cli(tmp_path: Path) -> None:
    script = tmp_path / "job.sh"
    script.write_text(
        "#!/bin/sh\n"
        'DB="$WORKFLOW_DB"\n'
        'sqlite3 "$DB" "CREATE TABLE IF NOT EXISTS state (key TEXT PRIMARY KEY, '
        "value TEXT NOT NULL, updated_at TEXT DEFAULT (datetime('now')))\"\n"
        'put() { sqlite3 "$DB" "INSERT OR REPLACE INTO state (key, value) '
        "VALUES ('$1', $2)\"; }\n"
        "put supervisor.status \"'running'\"\n"
        "put supervisor.heartbeat \"datetime('now')\"\n"
        "put supervisor.last_error \"'shell says hello'\"\n"
        "put supervisor.summary \"'shell job done'\"\n"
        "put supervisor.status \"'done'\"\n"
        "echo shell finished\n",
        encoding="utf-8",
    )
    script.chmod(0o755)
    conf = settings(tmp_path)
    flow = {"name": "shell", "command": ["./job.sh"]}
    async with running(conf, resolve(tmp_path, conf, flow)) as (sup, sub):
        # Six processes (the script and five sqlite3 CLIs): slow on a loaded machine.
        error = await wait_for_event(sub, "error", "shell", timeout=30)
        assert error.detail == "shell says hello"
        finished = await wait_for_event(sub, "finished", "shell", timeout=30)
        assert isinstance(finished, Finished)
        assert finished.summary == "shell job done"
        assert finished.note is None
        [status] = await sup.status("shell")
        assert status.status == "done"
        assert status.heartbeat is not None
        assert abs(status.heartbeat.timestamp() - time.time()) < 5
        assert "shell finished" in await sup.tail("shell", 5)


async def test_bundled_demo_finishes_under_supervision(tmp_path: Path) -> None:
    conf = settings(tmp_path)
    demo = ROOT / "workflows" / "examples" / "demo.py"
    flow = {"name": "demo", "script": str(demo), "env": {"DEMO_STEP_SECONDS": "0"}}
    async with running(conf, resolve(tmp_path, conf, flow)) as (sup, sub):
        finished = await wait_for_event(sub, "finished", "demo", timeout=10)
        assert isinstance(finished, Finished)
        assert finished.note is None
        [status] = await sup.status("demo")
        assert status.status == "done"
        assert status.summary is not None
        assert status.summary.startswith("Done")
