"""A corrupt database or a bad setting at start is one clear line and exit 2, never a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from workflows.templates import example_path

pytestmark = pytest.mark.timeout(30)
GARBAGE = b"this is not a database " * 200


def run(
    *args: str, env: dict[str, str] | None = None, cwd: Path
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args],
        cwd=cwd,
        env={"PATH": "/usr/bin:/bin", **(env or {})},
        capture_output=True,
        text=True,
        timeout=20,
        stdin=subprocess.DEVNULL,
        check=False,
    )


def assert_one_line(result: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    error_lines = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(error_lines) == 1, result.stderr
    for needle in needles:
        assert needle in error_lines[0]


@pytest.mark.parametrize("command", [("-m", "supervisor", "run"), ("-m", "bot", "--console")])
def test_a_corrupt_control_db_is_refused_before_anything_starts(
    tmp_path: Path, command: tuple[str, ...]
) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "control.db").write_bytes(GARBAGE)
    result = run(*command, env={"SUPERVISOR_DATA_DIR": "data"}, cwd=tmp_path)
    assert_one_line(result, "control DB", "control.db", "SUPERVISOR_DB_URL")


def test_a_corrupt_workflow_db_is_refused(tmp_path: Path) -> None:
    (tmp_path / "bad.db").write_bytes(GARBAGE)
    result = run(
        "-m", "workflows", "run", str(example_path("demo")), "--db", "bad.db", cwd=tmp_path
    )
    assert_one_line(result, "bad.db", "--db")


@pytest.mark.parametrize(
    ("variable", "command"),
    [
        ("SUPERVISOR_CHECK_INTERVAL_SECONDS", ("-m", "supervisor", "run")),
        ("SUPERVISOR_CHECK_INTERVAL_SECONDS", ("-m", "bot", "--console")),
        ("TELEGRAM_CHAT_ID", ("-m", "bot")),
    ],
)
def test_a_bad_setting_names_its_variable(
    tmp_path: Path, variable: str, command: tuple[str, ...]
) -> None:
    result = run(*command, env={variable: "not-a-number"}, cwd=tmp_path)
    assert_one_line(result, variable)
