"""The smoke gate: run the patched workflow from its worktree for a while, on a copy of its state.

The workflow is started the way the supervisor starts it (same argv, env and
process-group isolation) but from the worktree, on a copy of its state
database in a scratch directory, so it resumes from the checkpoint the live
run reached. It passes when it is still alive ``survive_seconds`` after its
first heartbeat (past the point where the live run failed), or when it
finishes cleanly before then. The live state database is only read
(through SQLite's backup API, so a WAL database copies consistently); the
live log and pid files are never touched: output goes to ``OUTPUT_FILE`` in
the scratch directory and no pid file is written.

What it does not promise:

- that the bug is gone: a failure that needs real inputs (a later message,
  a file, an API answer) or more time than the limit is not reproduced;
- isolation from what the workflow does while it runs: its network calls,
  agents and files other than its state database (paths in its env, paths it
  builds itself) are real;
- that all the code comes from the worktree: only the cwd and the arguments
  that are paths inside the repository are mapped; modules imported from
  elsewhere (an installed package, a PYTHONPATH in its env) run as they are
  live, and a file git does not carry (an interpreter in an untracked
  ``.venv``) is used from the live tree;
- cleanup after a ``kill -9`` of the supervisor mid-run: the group is ended
  however the coroutine ends, but no pid file records it for the next start.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

from supervisor.config import ResolvedWorkflow
from supervisor.heal.types import GateResult, Worktree
from supervisor.pidfiles import end_group, kill_group
from supervisor.statedb import StateReader
from workflows.contract import HEARTBEAT_FILE_ENV

NAME = "smoke"
DB_FILE = "state.db"  # the copy of the state database, in the scratch directory
OUTPUT_FILE = "output.log"  # stdout and stderr of the run, in the scratch directory
POLL_SECONDS = 0.1
GRACE_SECONDS = 2.0  # SIGTERM, then SIGKILL after this
REAP_SECONDS = 2.0
COPY_TIMEOUT_SECONDS = 5.0  # a live writer holding a lock that long makes the copy fail
TAIL_LINES = 3
TAIL_BYTES = 8192
DETAIL_CHARS = 200  # a phone line
_DECORATION = frozenset("^~ \t")  # traceback caret lines say nothing on their own


class Refused(ValueError):
    """The workflow cannot be run from the worktree; the message says why, in a line."""


def patched_command(
    workflow: ResolvedWorkflow, worktree: Worktree, db: Path
) -> tuple[tuple[str, ...], Path]:
    """The argv and cwd that run the worktree's code on ``db`` instead of the live database.

    An argument naming the live database (``--db`` of a ``script =`` workflow)
    becomes ``db``: the copy must be what it opens. Relative arguments stay
    as they are, since the cwd moves with them. Raises ``Refused`` when the
    cwd is outside the repository: the worktree has no counterpart for it.
    """
    cwd = _counterpart(workflow.cwd, worktree)
    if cwd is None:
        raise Refused(f"cwd {workflow.cwd} is outside the repository {worktree.repo}")
    return tuple(_argument(arg, workflow, worktree, db) for arg in workflow.argv), cwd


async def smoke_run(
    workflow: ResolvedWorkflow,
    worktree: Worktree,
    *,
    survive_seconds: float,
    limit_seconds: float,
    scratch: Path,
) -> GateResult:
    """Run the patched workflow and say whether it survived ``survive_seconds``.

    ``limit_seconds`` caps the whole gate from the call (copying the database
    included); ending the group may add up to ``GRACE_SECONDS`` more. Whatever
    happens, cancellation included, no process of the run is left behind.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit_seconds
    db = scratch / DB_FILE
    try:
        argv, cwd = patched_command(workflow, worktree, db)
    except Refused as exc:
        return _failed(str(exc))
    try:
        copying = asyncio.to_thread(_copy_state, workflow.db, db)
        await asyncio.wait_for(copying, max(0.0, deadline - loop.time()))
    except TimeoutError:
        return _failed(f"copying the state database took over the {_seconds(limit_seconds)} limit")
    except (sqlite3.Error, OSError) as exc:
        return _failed(f"could not copy the state database: {exc}")
    env = {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        **workflow.env,
        "WORKFLOW_DB": str(db),
        "WORKFLOW_NAME": workflow.name,
    }
    env.pop(HEARTBEAT_FILE_ENV, None)  # its beats go to its own copy of the table, read here
    reader = StateReader(db)
    try:
        baseline = (await asyncio.to_thread(reader.read)).heartbeat
        started = datetime.now(UTC).replace(microsecond=0)  # a SQLite stamp has whole seconds
        start = loop.time()
        with (scratch / OUTPUT_FILE).open("wb") as sink:
            try:
                proc = await asyncio.create_subprocess_exec(
                    *argv,
                    cwd=cwd,
                    env=env,
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=sink,
                    stderr=asyncio.subprocess.STDOUT,
                    start_new_session=True,
                )
            except OSError as exc:
                return _failed(f"could not start it: {exc}")
        watch = _Watch(proc, reader, baseline, started, scratch / OUTPUT_FILE)
        try:
            return await watch.run(start, deadline, survive_seconds, limit_seconds)
        finally:
            await _end(proc)
    finally:
        reader.close()


class _Watch:
    """Polls the run until it exits or the moment of the verdict comes."""

    def __init__(
        self,
        proc: asyncio.subprocess.Process,
        reader: StateReader,
        baseline: datetime | None,
        started: datetime,
        output: Path,
    ) -> None:
        self._proc = proc
        self._reader = reader
        self._baseline = baseline
        self._started = started
        self._output = output
        self._beat_after: float | None = None  # seconds from start to the first new heartbeat

    async def run(self, start: float, deadline: float, survive: float, limit: float) -> GateResult:
        """The verdict ``survive`` seconds after the first heartbeat, or at ``deadline``.

        The window counts from the first heartbeat, not the start: an
        interpreter slow to start on a busy host must not eat the time in
        which the bug would show.
        """
        loop = asyncio.get_running_loop()
        exited = asyncio.ensure_future(self._proc.wait())
        try:
            while True:
                decide_at = deadline
                if self._beat_after is not None:
                    decide_at = min(start + self._beat_after + survive, deadline)
                timeout = max(0.0, min(POLL_SECONDS, decide_at - loop.time()))
                await asyncio.wait({exited}, timeout=timeout)
                elapsed = loop.time() - start
                # Read before looking at the exit, so a beat just before it still counts.
                if self._beat_after is None and await self._new_beat():
                    self._beat_after = elapsed
                if exited.done():
                    return await self._exit(exited.result(), elapsed)
                if loop.time() >= decide_at:
                    return self._verdict(elapsed, survive, limit)
        finally:
            exited.cancel()

    async def _new_beat(self) -> bool:
        """A heartbeat the run wrote: not the copied one, and not older than the start."""
        beat = (await asyncio.to_thread(self._reader.read)).heartbeat
        return beat is not None and beat != self._baseline and beat >= self._started

    async def _exit(self, returncode: int, elapsed: float) -> GateResult:
        at = _seconds(elapsed)
        if returncode == 0:
            beat = "" if self._beat_after is None else f", heartbeat after {self._beat_after_s}"
            return GateResult(NAME, True, f"finished cleanly (exit 0) at {at}{beat}")
        tail = await asyncio.to_thread(_tail, self._output)
        return _failed(f"{_how(returncode)} at {at}" + (f": {tail}" if tail else ""))

    def _verdict(self, elapsed: float, survive: float, limit: float) -> GateResult:
        at = _seconds(elapsed)
        if self._beat_after is None:
            return _failed(f"no heartbeat by {at} (still running)")
        alive = elapsed - self._beat_after
        if alive < survive:
            return _failed(
                f"still running at the {_seconds(limit)} limit, {_seconds(alive)} after its "
                f"first heartbeat, short of the {_seconds(survive)} it had to survive"
            )
        return GateResult(NAME, True, f"heartbeat after {self._beat_after_s}, alive at {at}")

    @property
    def _beat_after_s(self) -> str:
        return _seconds(self._beat_after or 0.0)


async def _end(proc: asyncio.subprocess.Process) -> None:
    """End the whole group (SIGTERM, SIGKILL after the grace) and reap the leader.

    A second cancellation while waiting must not leave it running: SIGKILL at once.
    """
    try:
        await end_group(proc.pid, GRACE_SECONDS)
        await asyncio.wait_for(proc.wait(), REAP_SECONDS)
    except TimeoutError:
        pass  # a leader stuck in the kernel; end_group has logged it
    except BaseException:
        kill_group(proc.pid, signal.SIGKILL)
        raise


def _copy_state(live: Path, copy: Path) -> None:
    """Copy the live database consistently, opened read-only; none at all means start empty."""
    copy.parent.mkdir(parents=True, exist_ok=True)
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(f"{copy}{suffix}").unlink(missing_ok=True)
    if not live.exists():
        return
    uri = f"{live.absolute().as_uri()}?mode=ro"
    source = sqlite3.connect(uri, uri=True, timeout=COPY_TIMEOUT_SECONDS)
    try:
        target = sqlite3.connect(copy)
        try:
            source.backup(target)
        finally:
            target.close()
    finally:
        source.close()


def _counterpart(path: Path, worktree: Worktree) -> Path | None:
    """The same path inside the worktree, or None when it is not inside the repository.

    Compared as written first: resolving would follow a venv's ``python``
    symlink out of the tree. The resolved forms catch a repository reached
    through a symlink.
    """
    written = Path(os.path.normpath(path.absolute()))
    roots = {Path(os.path.normpath(worktree.repo.absolute())), worktree.repo.resolve()}
    for candidate in (written, path.resolve()):
        for root in roots:
            if candidate.is_relative_to(root):
                return worktree.path / candidate.relative_to(root)
    return None


def _argument(arg: str, workflow: ResolvedWorkflow, worktree: Worktree, db: Path) -> str:
    """One argument of the patched argv; ``--flag=value`` forms are mapped by their value."""
    prefix, value = "", arg
    if arg.startswith("-") and "=" in arg:
        flag, _, value = arg.partition("=")
        prefix = f"{flag}="
    if not value:
        return arg
    if _names(value, workflow.cwd, workflow.db):
        return f"{prefix}{db}"
    if not os.path.isabs(value):
        return arg
    live = Path(value)
    mapped = _counterpart(live, worktree)
    # A file only the live tree has is one git does not carry: keep using it.
    if mapped is None or (not mapped.exists() and live.exists()):
        return arg
    return f"{prefix}{mapped}"


def _names(value: str, cwd: Path, target: Path) -> bool:
    """Whether ``value`` (relative to ``cwd``) is the path ``target``."""
    candidate = cwd / value
    if os.path.normpath(candidate) == os.path.normpath(target):
        return True
    try:
        return candidate.resolve() == target.resolve()
    except (OSError, RuntimeError, ValueError):
        return False


def _tail(output: Path) -> str:
    """The last lines of the output that say something, joined for one line."""
    try:
        with output.open("rb") as file:
            file.seek(max(0, file.seek(0, os.SEEK_END) - TAIL_BYTES))
            text = file.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    lines = [line.strip() for line in text.splitlines() if not set(line) <= _DECORATION]
    joined = " | ".join(lines[-TAIL_LINES:])
    return joined if len(joined) <= DETAIL_CHARS else "…" + joined[-(DETAIL_CHARS - 1) :]


def _how(returncode: int) -> str:
    if returncode > 0:
        return f"exit {returncode}"
    try:
        return f"killed by {signal.Signals(-returncode).name}"
    except ValueError:
        return f"killed by signal {-returncode}"


def _seconds(value: float) -> str:
    return f"{value:.1f}s" if value < 10 else f"{value:.0f}s"


def _failed(detail: str) -> GateResult:
    return GateResult(NAME, False, detail)
