"""Pid files and process-group control, so no workflow process is ever orphaned.

Workflows run in their own session (``start_new_session=True``), so a
``kill -9`` of the supervisor leaves them running, reparented to init where
they cannot be ``wait()``-ed for. Each start is recorded in
``<run_dir>/<name>.pid``; on the next start :func:`reap_stale` ends whatever
is left of those groups. The leader's ``create_time`` tells a surviving leader
from an unrelated process that reused its pid.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import psutil

log = logging.getLogger(__name__)

_POLL = 0.05
_KILL_WAIT = 2.0
_CREATE_TIME_TOLERANCE = 0.01


@dataclass(frozen=True)
class PidRecord:
    pid: int
    pgid: int
    create_time: float
    argv: tuple[str, ...]
    supervisor_pid: int


def _pidfile(run_dir: Path, name: str) -> Path:
    return run_dir / f"{name}.pid"


def write_pidfile(run_dir: Path, name: str, pid: int, argv: Sequence[str]) -> None:
    """Atomically record a just-started group leader (pgid == pid: it has its own session)."""
    try:
        create_time = psutil.Process(pid).create_time()
    except psutil.NoSuchProcess:
        create_time = 0.0  # already gone: only its surviving group members will matter
    record = PidRecord(pid, pid, create_time, tuple(argv), os.getpid())
    run_dir.mkdir(parents=True, exist_ok=True)
    target = _pidfile(run_dir, name)
    tmp = run_dir / f".{name}.pid.tmp"
    with tmp.open("w", encoding="utf-8") as file:
        json.dump({**asdict(record), "argv": list(record.argv)}, file)
        file.flush()
        os.fsync(file.fileno())
    os.replace(tmp, target)


def remove_pidfile(run_dir: Path, name: str) -> None:
    _pidfile(run_dir, name).unlink(missing_ok=True)


def _parse(raw: Any) -> PidRecord:
    ints = [raw["pid"], raw["pgid"], raw["supervisor_pid"]]
    if not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in ints):
        raise ValueError("pid, pgid and supervisor_pid must be positive integers")
    argv = raw["argv"]
    if not isinstance(argv, list) or not all(isinstance(a, str) for a in argv):
        raise ValueError("argv must be a list of strings")
    create_time = raw["create_time"]
    if not isinstance(create_time, int | float) or isinstance(create_time, bool):
        raise ValueError("create_time must be a number")
    return PidRecord(ints[0], ints[1], float(create_time), tuple(argv), ints[2])


def read_pidfiles(run_dir: Path) -> dict[str, PidRecord]:
    """Every readable pid file by workflow name; corrupt ones are logged and removed."""
    records: dict[str, PidRecord] = {}
    for path in sorted(run_dir.glob("*.pid")):
        try:
            records[path.stem] = _parse(json.loads(path.read_text(encoding="utf-8")))
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("removing corrupt pid file %s: %s", path, exc)
            path.unlink(missing_ok=True)
    return records


def group_alive(pgid: int) -> bool:
    """Whether any process (zombies included) is in group ``pgid``."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def kill_group(pgid: int, sig: int) -> bool:
    """Send ``sig`` to the group; False if the group no longer exists."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    return True


def _live_members(pgid: int) -> list[psutil.Process]:
    """Processes of group ``pgid`` that are not zombies (a zombie is already dead)."""
    members = []
    for proc in psutil.process_iter():
        try:
            if os.getpgid(proc.pid) == pgid and proc.status() != psutil.STATUS_ZOMBIE:
                members.append(proc)
        except (OSError, psutil.Error):
            continue
    return members


def _group_running(pgid: int) -> bool:
    # killpg is the cheap probe; the scan only runs to see past unreaped zombies,
    # which a non-reaping init (containers) or a not-yet-waited parent leaves behind.
    return group_alive(pgid) and bool(_live_members(pgid))


async def _wait_gone(pgid: int, within: float) -> bool:
    deadline = asyncio.get_running_loop().time() + within
    while _group_running(pgid):
        if asyncio.get_running_loop().time() >= deadline:
            return False
        await asyncio.sleep(_POLL)
    return True


async def end_group(pgid: int, grace: float) -> None:
    """SIGTERM the group, SIGKILL it after ``grace`` seconds, then wait (~2 s) until it is gone."""
    if not kill_group(pgid, signal.SIGTERM) or await _wait_gone(pgid, grace):
        return
    log.warning("process group %d ignored SIGTERM for %.1fs, sending SIGKILL", pgid, grace)
    kill_group(pgid, signal.SIGKILL)
    if not await _wait_gone(pgid, _KILL_WAIT):
        log.error("process group %d still has members after SIGKILL", pgid)


def _leftover(record: PidRecord) -> bool:
    """Whether the recorded group still has live processes that are ours to end."""
    if record.pgid == os.getpgid(0):
        return False  # never our own group, whatever a stale file says
    try:
        leader_time = psutil.Process(record.pid).create_time()
    except psutil.NoSuchProcess:
        leader_time = record.create_time
    if abs(leader_time - record.create_time) >= _CREATE_TIME_TOLERANCE:
        # The pid was reused, so the old group is gone: a pid cannot be
        # reallocated while any process still holds it as its pgid.
        return False
    return bool(_live_members(record.pgid))


async def _reap_one(run_dir: Path, name: str, record: PidRecord, grace: float) -> bool:
    ended = False
    try:
        if _leftover(record):
            log.warning("ending leftover process group %d of workflow %s", record.pgid, name)
            await end_group(record.pgid, grace)
            ended = True
    except PermissionError as exc:
        log.error("cannot end process group %d of workflow %s: %s", record.pgid, name, exc)
    remove_pidfile(run_dir, name)
    return ended


async def reap_stale(run_dir: Path, grace: float) -> list[str]:
    """End the groups left by a previous supervisor; return the names of workflows ended."""
    records = read_pidfiles(run_dir)
    results = await asyncio.gather(
        *(_reap_one(run_dir, name, record, grace) for name, record in records.items())
    )
    return [name for name, ended in zip(records, results, strict=True) if ended]
