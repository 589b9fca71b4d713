"""The smoke gate runs the patched workflow from the worktree, on a copy of its state, and ends it.

Real child processes in a git-less layout that mimics a repository and its
worktree: ``repo/`` holds the live (failing) job, ``wt/`` the same files with
the job patched. The workflows write the state table themselves with
``sqlite3``, through ``workflows/contract.py`` loaded on its own (importing the
whole package would slow every start).
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import sys
from pathlib import Path
from typing import Any

import psutil
import pytest

from supervisor.config import ResolvedWorkflow
from supervisor.heal.smoke import DB_FILE, OUTPUT_FILE, Refused, patched_command, smoke_run
from supervisor.heal.types import GateResult, Worktree
from tests.conditions import wait_until
from tests.supervisor_harness import live_group, resolve, settings
from workflows import contract

pytestmark = pytest.mark.timeout(30)

SURVIVE = 1.0
LIMIT = 20.0

PRELUDE = r"""
import importlib.util, json, os, signal, sqlite3, subprocess, sys, time

spec = importlib.util.spec_from_file_location("contract", CONTRACT)
contract = importlib.util.module_from_spec(spec)
spec.loader.exec_module(contract)
db = sqlite3.connect(os.environ["WORKFLOW_DB"], timeout=5, isolation_level=None)
db.execute("PRAGMA journal_mode=WAL")
db.execute(contract.STATE_TABLE_DDL)

def put(key, value):
    db.execute(contract.UPSERT_STATE_SQL, (key, value))

def get(key):
    row = db.execute("SELECT value FROM state WHERE key = ?", (key,)).fetchone()
    return None if row is None else row[0]

def beat():  # as the workflow library does: the file the supervisor names, if it names one
    named = os.environ.get(contract.HEARTBEAT_FILE_ENV)
    if named:
        open(named, "a").close()
        os.utime(named)
    else:
        put(contract.HEARTBEAT_KEY, contract.format_timestamp())
"""

HEARTBEATS = """
put(contract.STATUS_KEY, "running")
while True:
    beat()
    time.sleep(0.05)
"""

CRASHES = """
beat()
print("loading the config", flush=True)
config = {}
print(config["x"])
"""

# Slow to start (past the survive window), then crashes soon after its first heartbeat.
SLOW_THEN_CRASHES = """
time.sleep(float(sys.argv[1]))
beat()
time.sleep(0.2)
print({}["late"])
"""

SILENT = """
print("thinking", flush=True)
time.sleep(60)
"""

FINISHES = """
put(contract.STATUS_KEY, "done")
print("all done", flush=True)
"""

RESUMES = """
put("resumed_from", get("checkpoint") or "nothing")
while True:
    beat()
    time.sleep(0.05)
"""

# Ignores SIGTERM and leaves a grandchild in its group; says who they are once both exist.
STUBBORN = """
signal.signal(signal.SIGTERM, signal.SIG_IGN)
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
with open(sys.argv[1] + ".tmp", "w") as file:
    json.dump({"leader": os.getpid(), "child": child.pid}, file)
os.replace(sys.argv[1] + ".tmp", sys.argv[1])
while True:
    beat()
    time.sleep(0.05)
"""


def write_job(root: Path, relative: str, body: str) -> Path:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"CONTRACT = {contract.__file__!r}\n{PRELUDE}\n{body}", encoding="utf-8")
    return path


def layout(
    tmp_path: Path,
    live: str,
    patched: str,
    *,
    job: str = "jobs/job.py",
    **table: Any,
) -> tuple[ResolvedWorkflow, Worktree]:
    """``repo/`` with the live job, ``wt/`` with the patched one, and the workflow running it.

    By default it runs as ``python jobs/job.py`` from the repository root, its
    database outside the repository as the supervisor's state dir would be.
    """
    repo, tree = tmp_path / "repo", tmp_path / "wt"
    write_job(repo, job, live)
    write_job(tree, job, patched)
    for root in (repo, tree):
        (root / "README.md").write_text("a repository\n", encoding="utf-8")
    (tmp_path / "state").mkdir(exist_ok=True)
    conf = settings(tmp_path)
    values: dict[str, Any] = {
        "name": "job",
        "command": [sys.executable, job],
        "cwd": str(repo),
        "db": str(tmp_path / "state" / "job.db"),
        **table,
    }
    [workflow] = resolve(tmp_path, conf, values)
    worktree = Worktree(repo=repo, path=tree, branch="heal/job/1", base="0" * 40)
    return workflow, worktree


async def smoke(
    workflow: ResolvedWorkflow, worktree: Worktree, tmp_path: Path, **options: float
) -> GateResult:
    timing = {"survive_seconds": SURVIVE, "limit_seconds": LIMIT, **options}
    return await smoke_run(workflow, worktree, scratch=tmp_path / "scratch", **timing)


def seed(db: Path, rows: dict[str, str]) -> None:
    """A live state database in WAL mode with ``rows`` already written."""
    connection = sqlite3.connect(db, isolation_level=None)
    try:
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute(contract.STATE_TABLE_DDL)
        for key, value in rows.items():
            connection.execute(contract.UPSERT_STATE_SQL, (key, value))
    finally:
        connection.close()


def live_files(db: Path) -> tuple[bytes, bytes, dict[str, str]]:
    """The database's bytes, its WAL's bytes and its rows: all a run could have changed."""
    wal = Path(f"{db}-wal")
    return db.read_bytes(), wal.read_bytes() if wal.exists() else b"", rows(db)


def rows(db: Path) -> dict[str, str]:
    connection = sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True)
    try:
        return dict(connection.execute("SELECT key, value FROM state").fetchall())
    finally:
        connection.close()


async def test_a_patched_job_that_heartbeats_and_survives_passes(tmp_path: Path) -> None:
    workflow, worktree = layout(tmp_path, live=CRASHES, patched=HEARTBEATS)
    result = await smoke(workflow, worktree, tmp_path)
    assert result.name == "smoke"
    assert result.passed, result.detail
    assert result.detail.startswith("heartbeat after ")
    assert ", alive at " in result.detail
    assert rows(tmp_path / "scratch" / DB_FILE)[contract.STATUS_KEY] == "running"


async def test_the_live_workflows_heartbeat_file_is_not_the_smoke_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A smoke run beating into the live workflow's file would keep a hung workflow looking
    alive and leave its own copy without a heartbeat: it is never given that file."""
    live = tmp_path / "live-beat"
    monkeypatch.setenv(contract.HEARTBEAT_FILE_ENV, str(live))
    workflow, worktree = layout(tmp_path, live=CRASHES, patched=HEARTBEATS)
    result = await smoke(workflow, worktree, tmp_path)
    assert result.passed, result.detail
    assert not live.exists()


async def test_a_patch_that_still_crashes_fails_with_the_error_line(tmp_path: Path) -> None:
    workflow, worktree = layout(tmp_path, live=CRASHES, patched=CRASHES.replace("x", "y"))
    result = await smoke(workflow, worktree, tmp_path)
    assert not result.passed
    assert result.detail.startswith("exit 1 at "), result.detail
    assert result.detail.endswith("KeyError: 'y'"), result.detail  # the worktree's copy ran
    assert "\n" not in result.detail
    assert len(result.detail) < 250


async def test_a_job_that_never_heartbeats_fails(tmp_path: Path) -> None:
    workflow, worktree = layout(tmp_path, live=CRASHES, patched=SILENT)
    # The live run's last heartbeat, written just now, is no heartbeat of the smoke run's.
    seed(workflow.db, {contract.HEARTBEAT_KEY: contract.format_timestamp()})
    # Alive but silent: it is given until the limit for its first heartbeat, then refused.
    result = await smoke(workflow, worktree, tmp_path, limit_seconds=3.0)
    assert not result.passed
    assert result.detail.startswith("no heartbeat by "), result.detail
    assert "still running" in result.detail


async def test_the_window_counts_from_the_first_heartbeat(tmp_path: Path) -> None:
    # A start slower than the window (a busy host) must not hide a crash right after it.
    survive = 2.0
    workflow, worktree = layout(
        tmp_path,
        live=CRASHES,
        patched=SLOW_THEN_CRASHES,
        command=[sys.executable, "jobs/job.py", str(survive + 0.5)],
    )
    result = await smoke(workflow, worktree, tmp_path, survive_seconds=survive)
    assert not result.passed, result.detail
    assert result.detail.startswith("exit 1 at "), result.detail
    assert result.detail.endswith("KeyError: 'late'"), result.detail


async def test_a_job_that_finishes_cleanly_passes(tmp_path: Path) -> None:
    workflow, worktree = layout(tmp_path, live=CRASHES, patched=FINISHES)
    result = await smoke(workflow, worktree, tmp_path, survive_seconds=LIMIT)
    assert result.passed, result.detail
    assert result.detail.startswith("finished cleanly (exit 0) at "), result.detail
    assert "all done" in (tmp_path / "scratch" / OUTPUT_FILE).read_text(encoding="utf-8")


async def test_the_live_database_is_untouched_and_the_copy_resumes_from_it(
    tmp_path: Path,
) -> None:
    # An absolute script path, run from a subdirectory: both map into the worktree.
    (tmp_path / "repo" / "work").mkdir(parents=True)
    (tmp_path / "wt" / "work").mkdir(parents=True)
    workflow, worktree = layout(
        tmp_path,
        live=CRASHES,
        patched=RESUMES,
        command=[sys.executable, str(tmp_path / "repo" / "jobs" / "job.py")],
        cwd=str(tmp_path / "repo" / "work"),
    )
    seed(workflow.db, {"checkpoint": "step 3 of 7", contract.STATUS_KEY: "error"})
    # A writer still holds the database with its last rows only in the WAL.
    writer = sqlite3.connect(workflow.db, isolation_level=None)
    try:
        writer.execute("PRAGMA wal_autocheckpoint=0")
        writer.execute(contract.UPSERT_STATE_SQL, ("checkpoint", "step 4 of 7"))
        before = live_files(workflow.db)
        assert before[1], "the last rows are in the WAL"

        result = await smoke(workflow, worktree, tmp_path)

        assert result.passed, result.detail
        assert live_files(workflow.db) == before
    finally:
        writer.close()
    copy = rows(tmp_path / "scratch" / DB_FILE)
    assert copy["resumed_from"] == "step 4 of 7"
    assert copy[contract.STATUS_KEY] == "error"
    conf = settings(tmp_path)
    assert not conf.run_dir.exists() or not list(conf.run_dir.iterdir())  # no pid file
    assert not conf.logs_dir.exists() or not list(conf.logs_dir.iterdir())  # no live log


async def test_a_missing_database_starts_empty(tmp_path: Path) -> None:
    workflow, worktree = layout(tmp_path, live=CRASHES, patched=RESUMES)
    result = await smoke(workflow, worktree, tmp_path)
    assert result.passed, result.detail
    assert not workflow.db.exists()
    assert rows(tmp_path / "scratch" / DB_FILE)["resumed_from"] == "nothing"


async def test_cancelling_it_leaves_no_process(tmp_path: Path) -> None:
    pids = tmp_path / "pids.json"
    workflow, worktree = layout(
        tmp_path, live=CRASHES, patched=STUBBORN, command=[sys.executable, "jobs/job.py", str(pids)]
    )
    task = asyncio.create_task(smoke(workflow, worktree, tmp_path, survive_seconds=LIMIT))
    await wait_until(pids.exists, timeout=20)
    started = json.loads(pids.read_text(encoding="utf-8"))
    leader = started["leader"]
    assert os.getpgid(leader) == leader  # a group of its own, not ours
    assert {proc.pid for proc in live_group(leader)} == {leader, started["child"]}
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert live_group(leader) == []
    assert not psutil.pid_exists(started["child"]) or (
        psutil.Process(started["child"]).status() == psutil.STATUS_ZOMBIE
    )


async def test_a_passing_run_is_ended_too(tmp_path: Path) -> None:
    pids = tmp_path / "pids.json"
    workflow, worktree = layout(
        tmp_path, live=CRASHES, patched=STUBBORN, command=[sys.executable, "jobs/job.py", str(pids)]
    )
    result = await smoke(workflow, worktree, tmp_path)
    assert result.passed, result.detail
    assert live_group(json.loads(pids.read_text(encoding="utf-8"))["leader"]) == []


async def test_the_limit_is_a_hard_cap(tmp_path: Path) -> None:
    workflow, worktree = layout(tmp_path, live=CRASHES, patched=HEARTBEATS)
    result = await smoke(workflow, worktree, tmp_path, survive_seconds=LIMIT, limit_seconds=SURVIVE)
    assert not result.passed
    assert result.detail.startswith("still running at the 1.0s limit"), result.detail


async def test_a_cwd_outside_the_repository_is_refused(tmp_path: Path) -> None:
    (tmp_path / "elsewhere").mkdir()
    workflow, worktree = layout(
        tmp_path, live=CRASHES, patched=HEARTBEATS, cwd=str(tmp_path / "elsewhere")
    )
    result = await smoke(workflow, worktree, tmp_path)
    assert not result.passed
    assert "outside the repository" in result.detail
    assert not (tmp_path / "scratch" / OUTPUT_FILE).exists()  # nothing was started


async def test_a_missing_program_fails_to_start(tmp_path: Path) -> None:
    workflow, worktree = layout(
        tmp_path, live=CRASHES, patched=HEARTBEATS, command=["./no-such-program"]
    )
    result = await smoke(workflow, worktree, tmp_path)
    assert not result.passed
    assert result.detail.startswith("could not start it: "), result.detail


def test_a_script_workflow_runs_the_worktree_script_on_the_copy(tmp_path: Path) -> None:
    repo, tree = tmp_path / "repo", tmp_path / "wt"
    for root in (repo, tree, repo / ".venv" / "bin"):
        root.mkdir(parents=True, exist_ok=True)
    (repo / "flow.py").write_text("", encoding="utf-8")
    (tree / "flow.py").write_text("", encoding="utf-8")
    untracked = repo / ".venv" / "bin" / "python"  # git does not carry it into the worktree
    untracked.write_text("", encoding="utf-8")
    conf = settings(tmp_path)
    [workflow] = resolve(
        tmp_path, conf, {"name": "flow", "script": str(repo / "flow.py"), "cwd": str(repo)}
    )
    worktree = Worktree(repo=repo, path=tree, branch="heal/flow/1", base="0" * 40)
    copy = tmp_path / "scratch" / DB_FILE
    argv, cwd = patched_command(workflow, worktree, copy)
    assert cwd == tree
    assert argv == (
        sys.executable,
        "-m",
        "workflows",
        "run",
        str(tree / "flow.py"),
        "--db",
        str(copy),
    )

    [command] = resolve(
        tmp_path,
        conf,
        {
            "name": "flow",
            "command": [str(untracked), "flow.py", f"--state={workflow.db}", f"--x={repo}/flow.py"],
            "cwd": str(repo),
        },
    )
    argv, _ = patched_command(command, worktree, copy)
    assert argv == (str(untracked), "flow.py", f"--state={copy}", f"--x={tree}/flow.py")

    with pytest.raises(Refused, match="outside the repository"):
        patched_command(workflow, Worktree(tmp_path / "other", tree, "b", "0" * 40), copy)


async def test_a_script_workflow_end_to_end(tmp_path: Path) -> None:
    repo, tree = tmp_path / "repo", tmp_path / "wt"
    source = (
        "from workflows import Context, Workflow\n"
        'wf = Workflow("flow")\n'
        "@wf.main\n"
        "def main(ctx: Context) -> None:\n"
        "    {}\n"
    )
    repo.mkdir()
    tree.mkdir()
    (repo / "flow.py").write_text(source.format('raise KeyError("x")'), encoding="utf-8")
    (tree / "flow.py").write_text(source.format('ctx.summary("patched")'), encoding="utf-8")
    conf = settings(tmp_path)
    [workflow] = resolve(
        tmp_path, conf, {"name": "flow", "script": str(repo / "flow.py"), "cwd": str(repo)}
    )
    seed(workflow.db, {contract.SUMMARY_KEY: "live"})
    before = live_files(workflow.db)
    worktree = Worktree(repo=repo, path=tree, branch="heal/flow/1", base="0" * 40)
    result = await smoke(workflow, worktree, tmp_path, survive_seconds=LIMIT)
    assert result.passed, result.detail
    assert result.detail.startswith("finished cleanly"), result.detail
    assert live_files(workflow.db) == before
    assert rows(tmp_path / "scratch" / DB_FILE)[contract.SUMMARY_KEY] == "patched"
