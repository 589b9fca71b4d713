"""``python -m workflows``: templates that run as written, clear usage errors, db defaults.

Each test runs the real CLI in a child process, offline (the conftest
fixture clears ``ANTHROPIC_*``, so every example falls back to its script).
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from workflows.contract import STATUS_KEY, SUMMARY_KEY
from workflows.templates import TEMPLATES, example_path


def _cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "workflows", *args],
        env=dict(os.environ, WORKFLOW_HEARTBEAT_SECONDS="0.1", DEMO_STEP_SECONDS="0", **env),
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )


FINAL_SUMMARIES = {
    "api-builder": "Built 3 endpoints",
    "demo": "Done: 3 steps implemented and approved.",
    "feature": "Feature complete: end-to-end checks pass.",
    "refactor": "Refactor finished (done).",
}


def _read(db: Path, key: str) -> str:
    with sqlite3.connect(db) as conn:
        [(value,)] = conn.execute("SELECT value FROM state WHERE key = ?", (key,))
    return str(value)


def _status(db: Path) -> str:
    return _read(db, STATUS_KEY)


def _assert_one_line_usage_error(result: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    for needle in needles:
        assert needle in lines[0]


def test_new_from_template_runs_offline(tmp_path: Path) -> None:
    created = _cli("new", "my-api", "--template", "api-builder")
    assert created.returncode == 0, created.stderr
    written = tmp_path / "my_api.py"
    assert 'Workflow("my-api")' in written.read_text()

    ran = _cli("run", str(written), "--db", "my.db", "--input", '{"specPath": "SPEC.md"}')

    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "Built 3 endpoints" in ran.stdout
    assert _status(tmp_path / "my.db") == "done"


def test_new_refuses_an_unknown_template() -> None:
    _assert_one_line_usage_error(_cli("new", "x", "--template", "nope"), "'nope'", "api-builder")


def test_new_refuses_to_overwrite(tmp_path: Path) -> None:
    (tmp_path / "taken.py").write_text("# mine\n")
    _assert_one_line_usage_error(_cli("new", "taken"), "taken.py already exists")
    assert (tmp_path / "taken.py").read_text() == "# mine\n"


def test_run_refuses_bad_input_json() -> None:
    result = _cli("run", str(example_path("demo")), "--input", "{not json")
    _assert_one_line_usage_error(result, "--input is not valid JSON")


def test_run_refuses_a_missing_file() -> None:
    _assert_one_line_usage_error(_cli("run", "nowhere.py"), "workflow file not found: nowhere.py")


def test_db_defaults_to_workflow_db_env(tmp_path: Path) -> None:
    result = _cli("run", str(example_path("demo")), WORKFLOW_DB=str(tmp_path / "from-env.db"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert _status(tmp_path / "from-env.db") == "done"
    assert not (tmp_path / ".smithers").exists()


def test_db_defaults_to_smithers_dir(tmp_path: Path) -> None:
    result = _cli("run", str(example_path("feature")))
    assert result.returncode == 0, result.stdout + result.stderr
    assert _status(tmp_path / ".smithers" / "feature.db") == "done"


@pytest.mark.parametrize("template", sorted(TEMPLATES))
def test_bundled_example_runs_offline(template: str, tmp_path: Path) -> None:
    db = tmp_path / f"{template}.db"
    result = _cli("run", str(example_path(template)), "--db", str(db))
    assert result.returncode == 0, result.stdout + result.stderr
    assert _status(db) == "done"
    assert _read(db, SUMMARY_KEY).startswith(FINAL_SUMMARIES[template])
