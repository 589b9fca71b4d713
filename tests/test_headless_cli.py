"""``python -m supervisor run --json`` and ``status``: the supervisor without the bot."""

from __future__ import annotations

import json
import re
import signal
import sqlite3
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest

from tests.supervisor_harness import (
    Headless,
    settings,
    table,
    write_state,
    write_toml,
)
from workflows.contract import HEARTBEAT_KEY, STATUS_KEY, SUMMARY_KEY, format_timestamp

pytestmark = pytest.mark.timeout(20)


def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "supervisor", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=15,
        check=False,
    )


def test_run_json_prints_one_event_per_line_and_records_each(tmp_path: Path) -> None:
    conf = settings(tmp_path)
    errors = [[1, "first problem"]]
    config = write_toml(
        tmp_path / "supervisor.toml",
        [
            table(tmp_path, "job", db="job.db", plan={"beats": 3, "errors": errors, "exit": 7}),
            table(tmp_path, "long", db="long.db"),
        ],
    )
    headless = Headless(config, conf, "--json")
    try:
        headless.wait_for("crashed")
        headless.proc.send_signal(signal.SIGTERM)
        assert headless.proc.wait(10) == 0
        while not headless.lines.empty():
            headless.next_line()
    finally:
        headless.close()
    events = [json.loads(line) for line in headless.seen]
    for event in events:
        assert {"kind", "workflow", "detail", "time"} <= set(event)
        datetime.fromisoformat(event["time"])
    kinds = [(e["workflow"], e["kind"]) for e in events]
    assert ("job", "error") in kinds
    assert ("long", "stopped") in kinds  # the shutdown ended the long runner
    crash = next(e for e in events if e["kind"] == "crashed")
    assert crash["detail"] == "exit code 7"
    assert crash["incident"]
    with sqlite3.connect(tmp_path / "data" / "control.db") as db:
        stored = db.execute("SELECT workflow, kind, detail FROM supervisor_events ORDER BY id")
        recorded = [tuple(row) for row in stored]
    printed = [(e["workflow"], e["kind"], e["detail"]) for e in events]
    assert printed == recorded[: len(printed)]
    assert len(recorded) >= len(printed)


def test_status_reads_the_files_with_no_supervisor_running(tmp_path: Path) -> None:
    db = tmp_path / "report.db"
    write_state(db, STATUS_KEY, "running")
    write_state(db, SUMMARY_KEY, "Writing chapter 3.")
    write_state(db, HEARTBEAT_KEY, format_timestamp())
    write_toml(
        tmp_path / "supervisor.toml",
        [
            {"name": "report", "command": ["true"], "db": "report.db"},
            {"name": "absent", "command": ["true"], "db": "absent.db"},
        ],
    )
    env = {"PATH": "/usr/bin:/bin", "SUPERVISOR_DATA_DIR": str(tmp_path / "data")}
    result = cli("status", env=env)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    # No process: its own "running" and its heartbeat would be a lie.
    assert "⏹ report: stopped\n" in out
    assert "Writing chapter 3." in out
    assert "⏹ absent: stopped\n" in out
    assert "problem: database not found" in out


def test_status_shows_the_pid_of_a_workflow_a_supervisor_runs(tmp_path: Path) -> None:
    conf = settings(tmp_path)
    config = write_toml(tmp_path / "supervisor.toml", [table(tmp_path, "busy", db="busy.db")])
    headless = Headless(config, conf)
    try:
        line = headless.next_line()
        assert " busy started: pid " in line
        pid = line.split()[-1]
        env = {"SUPERVISOR_DATA_DIR": str(conf.data_dir), "PATH": "/usr/bin:/bin"}
        result = cli("status", env=env)
        assert re.search(rf"🟢 busy: running · pid {pid} · heartbeat \d+s ago", result.stdout)
    finally:
        headless.close()


def test_bad_configuration_is_one_line_and_exit_2(tmp_path: Path) -> None:
    (tmp_path / "supervisor.toml").write_text(
        '[[workflows]]\nname = "x"\ncommand = ["true"]\nhang_treshold_seconds = 5\n',
        encoding="utf-8",
    )
    result = cli("run", env={"PATH": "/usr/bin:/bin"})
    assert result.returncode == 2
    [line] = [ln for ln in result.stderr.splitlines() if ln.startswith("error:")]
    assert "supervisor.toml" in line
    assert "'x'" in line
    assert "hang_treshold_seconds" in line
