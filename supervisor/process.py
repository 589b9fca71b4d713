"""One workflow process: spawned in its own process group, its output in its log.

Starting a new session makes the workflow the leader of a process group, so
stopping it reaches every child it started (agents, test runners, ``bunx``),
and a pid file lets a restarted supervisor find the group if the old one was
killed without a chance to clean up.

The pid file exists before the workflow runs a single instruction: the child
starts as a shell that waits on a pipe for a go-ahead and then ``exec``s the
workflow (same pid, same group). The go-ahead is written only once the pid
file is on disk. If that write fails, or the supervisor dies first (even by
``kill -9``), the pipe closes unwritten and the shell exits without running
anything: no copy can ever run that a later start cannot find.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import shutil
import signal
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from supervisor.beats import beat_file, prepare
from supervisor.config import ResolvedWorkflow
from supervisor.faults import crash_point
from supervisor.logs import LogWriter, pump
from supervisor.pidfiles import end_group, group_alive, write_pidfile
from workflows.contract import HEARTBEAT_FILE_ENV

log = logging.getLogger("supervisor")

# The shell's stdin is the go-ahead pipe; $0 is a label and "$@" the workflow's argv.
GO_AHEAD_SCRIPT = 'read -r go && exec "$@" < /dev/null'

# How long to wait for the rest of the output after the whole group has gone.
DRAIN_SECONDS = 1.0
STREAM_LIMIT = 2**16


@dataclass(frozen=True, slots=True)
class Exit:
    """How a process ended: ``code`` for an exit, ``signal`` name when killed by one."""

    code: int | None
    signal: str | None

    @property
    def clean(self) -> bool:
        return self.code == 0

    @classmethod
    def from_returncode(cls, returncode: int) -> Exit:
        if returncode < 0:
            return cls(None, signal.Signals(-returncode).name)
        return cls(returncode, None)


class UnrecordedStart(OSError):
    """The pid file could not be written, so the workflow was not let run."""


def _beat_env(workflow: ResolvedWorkflow, run_dir: Path) -> dict[str, str]:
    """The beat file named to the workflow (made at its first beat); none if its directory
    cannot be made: the workflow then heartbeats in its state table, as without one."""
    beat = beat_file(run_dir, workflow.name)
    try:
        prepare(beat)
    except OSError as exc:
        log.warning("%s: no heartbeat file (%s); it beats in its state table", workflow.name, exc)
        return {}
    return {HEARTBEAT_FILE_ENV: str(beat)}


def _check_command(argv: tuple[str, ...] | list[str], cwd: Path, env: Mapping[str, str]) -> None:
    """Raise the OSError ``exec`` would, before anything starts (the shell would only exit 127)."""
    program = argv[0]
    if os.sep in program:
        found = os.access(cwd / program, os.X_OK) and not (cwd / program).is_dir()
    else:
        found = shutil.which(program, path=env.get("PATH", os.defpath)) is not None
    if not found:
        raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), program)


class _ExitProtocol(asyncio.subprocess.SubprocessStreamProtocol):
    """Tells the exit apart from the end of the output.

    ``Process.wait()`` also waits for every pipe to close, which a child
    holding the output open would delay forever; the exit is what matters.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(limit=STREAM_LIMIT, loop=loop)
        self.exited: asyncio.Future[None] = loop.create_future()

    def process_exited(self) -> None:
        super().process_exited()
        if not self.exited.done():
            self.exited.set_result(None)


class WorkflowProcess:
    """A running workflow; ``wait()`` returns when it has exited and its output is logged."""

    def __init__(
        self,
        proc: asyncio.subprocess.Process,
        exited: asyncio.Future[None],
        pump_task: asyncio.Task[None],
    ) -> None:
        self._proc = proc
        self._exited = exited
        self._pump = pump_task
        self.pid = proc.pid

    @property
    def exited(self) -> bool:
        """The leader has exited (its exit may not be handled yet)."""
        return self._exited.done()

    @classmethod
    async def spawn(
        cls, workflow: ResolvedWorkflow, log: LogWriter, run_dir: Path
    ) -> WorkflowProcess:
        """Start the workflow once its pid file is written (see the module docstring).

        An OSError (missing command, bad cwd) propagates to the caller, and so
        does ``UnrecordedStart`` when the pid file cannot be written; in
        either case no process is left running.
        """
        env = {
            **os.environ,
            "PYTHONUNBUFFERED": "1",
            **workflow.env,
            **_beat_env(workflow, run_dir),
        }
        _check_command(workflow.argv, workflow.cwd, env)
        loop = asyncio.get_running_loop()
        protocol = _ExitProtocol(loop)
        go_read, go_write = os.pipe()  # neither end is inherited but as the shell's stdin
        try:
            transport, _ = await loop.subprocess_exec(
                lambda: protocol,
                "/bin/sh",
                "-c",
                GO_AHEAD_SCRIPT,
                workflow.name,
                *workflow.argv,
                cwd=workflow.cwd,
                env=env,
                stdin=go_read,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,
            )
        except BaseException:
            os.close(go_write)
            raise
        finally:
            os.close(go_read)
        proc = asyncio.subprocess.Process(transport, protocol, loop)
        assert proc.stdout is not None
        pumping = asyncio.create_task(pump(proc.stdout, log))
        crash_point("spawned-before-pidfile")
        try:
            # In a thread: its fsync would otherwise stall every other workflow's watch.
            await asyncio.to_thread(write_pidfile, run_dir, workflow.name, proc.pid, workflow.argv)
        except OSError as exc:
            os.close(go_write)  # the shell reads end-of-file and exits without running it
            await protocol.exited
            await pumping
            raise UnrecordedStart(f"could not write its pid file: {exc}") from exc
        crash_point("pidfile-before-go-ahead")
        os.write(go_write, b"go\n")
        os.close(go_write)
        return cls(proc, protocol.exited, pumping)

    async def wait(self, grace: float) -> Exit:
        """The exit of the leader, once the rest of its group is ended and its output logged.

        Members the leader left behind (a backgrounded child) would outlive it
        unsupervised and keep its output pipe open, so they are ended here
        (SIGTERM, SIGKILL after ``grace``), and the pipe is drained only briefly.
        """
        await self._exited
        returncode = self._proc.returncode
        assert returncode is not None  # set before process_exited is called
        if group_alive(self.pid):
            await end_group(self.pid, grace)
        try:
            await asyncio.wait_for(asyncio.shield(self._pump), DRAIN_SECONDS)
        except TimeoutError:
            self._pump.cancel()  # a member that could not be ended still holds the pipe
        return Exit.from_returncode(returncode)

    async def terminate(self, grace: float) -> None:
        """SIGTERM to the group, SIGKILL after ``grace`` seconds; returns when all are gone."""
        await end_group(self.pid, grace)
