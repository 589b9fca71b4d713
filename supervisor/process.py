"""One workflow process: spawned in its own process group, its output in its log.

Starting a new session makes the workflow the leader of a process group, so
stopping it reaches every child it started (agents, test runners, ``bunx``),
and a pid file lets a restarted supervisor find the group if the old one was
killed without a chance to clean up.
"""

from __future__ import annotations

import asyncio
import os
import signal
from dataclasses import dataclass
from pathlib import Path

from supervisor.config import ResolvedWorkflow
from supervisor.logs import LogWriter, pump
from supervisor.pidfiles import end_group, group_alive, write_pidfile

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

    @classmethod
    async def spawn(
        cls, workflow: ResolvedWorkflow, log: LogWriter, run_dir: Path
    ) -> WorkflowProcess:
        """Start the workflow; an OSError (missing command, bad cwd) propagates to the caller."""
        loop = asyncio.get_running_loop()
        protocol = _ExitProtocol(loop)
        transport, _ = await loop.subprocess_exec(
            lambda: protocol,
            *workflow.argv,
            cwd=workflow.cwd,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **workflow.env},
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
        )
        proc = asyncio.subprocess.Process(transport, protocol, loop)
        # In a thread: its fsync would otherwise stall every other workflow's watch.
        await asyncio.to_thread(write_pidfile, run_dir, workflow.name, proc.pid, workflow.argv)
        assert proc.stdout is not None
        return cls(proc, protocol.exited, asyncio.create_task(pump(proc.stdout, log)))

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
