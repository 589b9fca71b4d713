"""Pid files and process groups: real processes, including a supervisor killed with -9."""

from __future__ import annotations

import ctypes
import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from supervisor.pidfiles import (
    end_group,
    group_alive,
    kill_group,
    read_pidfiles,
    reap_stale,
    remove_pidfile,
    write_pidfile,
)

_REPO = Path(__file__).resolve().parents[1]
_PR_SET_CHILD_SUBREAPER = 36
_GROUP_ARGV = ["sh", "-c", "sleep 60 & sleep 60"]
_FAKE_SUPERVISOR = """
import subprocess, sys, time
from pathlib import Path
from supervisor.pidfiles import write_pidfile
argv = ["sh", "-c", "sleep 60 & sleep 60"]
proc = subprocess.Popen(argv, start_new_session=True)
write_pidfile(Path(sys.argv[1]), "demo", proc.pid, argv)
print(proc.pid, flush=True)
time.sleep(60)
"""


@pytest.fixture
def subreaper() -> Iterator[None]:
    """Orphans come back to this test process (this sandbox's init never reaps), so none leak."""
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    if prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        pytest.skip("PR_SET_CHILD_SUBREAPER unavailable")
    yield
    prctl(_PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)


def _spawn(
    argv: list[str],
    *,
    pipe: bool = False,
    new_session: bool = True,
    env: dict[str, str] | None = None,
) -> subprocess.Popen[str]:
    """Popen (not asyncio): after a supervisor restart the group is not an asyncio child."""
    stdout = subprocess.PIPE if pipe else None
    return subprocess.Popen(argv, start_new_session=new_session, stdout=stdout, text=True, env=env)


def _members(pgid: int, *, zombies: bool = True) -> list[int]:
    found = []
    for proc in psutil.process_iter():
        try:
            if os.getpgid(proc.pid) == pgid and (zombies or proc.status() != "zombie"):
                found.append(proc.pid)
        except (OSError, psutil.Error):
            continue
    return found


def _wait_for_sleeps(pgid: int) -> list[int]:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        pids = _members(pgid)
        names = [psutil.Process(pid).name() for pid in pids]
        if names.count("sleep") == 2:
            return pids
        time.sleep(0.02)
    raise AssertionError(f"group {pgid} never had two sleeps")


def _reap(pids: list[int]) -> None:
    for pid in pids:
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            continue


def test_pidfile_round_trip(tmp_path: Path) -> None:
    proc = subprocess.Popen(["sleep", "5"], start_new_session=True)
    try:
        write_pidfile(tmp_path, "demo", proc.pid, ["sleep", "5"])
        raw = json.loads((tmp_path / "demo.pid").read_text())
        assert set(raw) == {"pid", "pgid", "create_time", "argv", "supervisor_pid"}
        records = read_pidfiles(tmp_path)
        assert list(records) == ["demo"]
        record = records["demo"]
        assert (record.pid, record.pgid) == (proc.pid, os.getpgid(proc.pid))
        assert record.create_time == psutil.Process(proc.pid).create_time()
        assert record.argv == ("sleep", "5")
        assert record.supervisor_pid == os.getpid()
        assert [p.name for p in tmp_path.iterdir()] == ["demo.pid"]  # no temp file left
        remove_pidfile(tmp_path, "demo")
        remove_pidfile(tmp_path, "demo")
        assert read_pidfiles(tmp_path) == {}
    finally:
        proc.kill()
        proc.wait()


def test_corrupt_pidfiles_are_skipped_and_removed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    write_pidfile(tmp_path, "good", os.getpid(), ["python"])
    (tmp_path / "garbage.pid").write_text("{not json")
    (tmp_path / "wrongtype.pid").write_text(json.dumps({"pid": "12", "pgid": 12}))
    (tmp_path / "list.pid").write_text("[1, 2]")
    with caplog.at_level(logging.WARNING, logger="supervisor.pidfiles"):
        records = read_pidfiles(tmp_path)
    assert list(records) == ["good"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["good.pid"]
    assert caplog.text.count("corrupt pid file") == 3


async def test_reap_stale_ends_a_whole_group(tmp_path: Path, subreaper: None) -> None:
    proc = _spawn(_GROUP_ARGV)
    pids = _wait_for_sleeps(proc.pid)
    write_pidfile(tmp_path, "demo", proc.pid, _GROUP_ARGV)
    try:
        assert await reap_stale(tmp_path, grace=1.0) == ["demo"]
        assert _members(proc.pid, zombies=False) == []
    finally:
        kill_group(proc.pid, signal.SIGKILL)
        proc.wait()
        _reap(pids)
    assert _members(proc.pid) == []
    assert not (tmp_path / "demo.pid").exists()


async def test_reap_stale_after_supervisor_killed_with_sigkill(
    tmp_path: Path, subreaper: None
) -> None:
    fake = _spawn(
        [sys.executable, "-c", _FAKE_SUPERVISOR, str(tmp_path)],
        pipe=True,
        new_session=False,
        env={**os.environ, "PYTHONPATH": str(_REPO)},
    )
    assert fake.stdout is not None
    pgid = int(fake.stdout.readline())
    pids = _wait_for_sleeps(pgid)
    fake.kill()
    fake.wait()
    fake.stdout.close()
    try:
        assert _members(pgid, zombies=False)  # the group outlived its supervisor
        assert await reap_stale(tmp_path, grace=1.0) == ["demo"]
        assert _members(pgid, zombies=False) == []
    finally:
        kill_group(pgid, signal.SIGKILL)
        _reap(pids)
    assert not group_alive(pgid)


async def test_dead_pid_is_left_alone_and_its_file_removed(tmp_path: Path) -> None:
    proc = _spawn(["sleep", "5"])
    write_pidfile(tmp_path, "gone", proc.pid, ["sleep", "5"])
    proc.kill()
    proc.wait()
    assert not group_alive(proc.pid)
    assert not kill_group(proc.pid, signal.SIGTERM)
    assert await reap_stale(tmp_path, grace=0.2) == []
    assert read_pidfiles(tmp_path) == {}


async def test_reused_pid_is_left_alone(tmp_path: Path) -> None:
    # An unrelated group leader now holds the recorded pid (and so the pgid).
    proc = _spawn(["sleep", "5"])
    try:
        created = psutil.Process(proc.pid).create_time()
        record = {
            "pid": proc.pid,
            "pgid": proc.pid,
            "create_time": created - 100,
            "argv": ["old"],
            "supervisor_pid": 1,
        }
        (tmp_path / "old.pid").write_text(json.dumps(record))
        assert await reap_stale(tmp_path, grace=0.2) == []
        assert proc.poll() is None
        assert not (tmp_path / "old.pid").exists()
    finally:
        proc.kill()
        proc.wait()


async def test_end_group_kills_what_ignores_sigterm() -> None:
    code = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "print('ready', flush=True); time.sleep(60)"
    )
    proc = _spawn([sys.executable, "-c", code], pipe=True)
    assert proc.stdout is not None
    assert proc.stdout.readline() == "ready\n"
    started = time.monotonic()
    await end_group(proc.pid, grace=0.3)
    elapsed = time.monotonic() - started
    assert _members(proc.pid, zombies=False) == []
    assert proc.wait(timeout=2) == -signal.SIGKILL
    proc.stdout.close()
    assert 0.3 <= elapsed < 2
