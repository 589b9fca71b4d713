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
from supervisor.pidfiles import end_group, remove_pidfile, write_pidfile


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


class WorkflowProcess:
    """A running workflow; ``wait()`` returns when it has exited and its output is logged."""

    def __init__(self, proc: asyncio.subprocess.Process, pump_task: asyncio.Task[None]) -> None:
        self._proc = proc
        self._pump = pump_task
        self.pid = proc.pid

    @classmethod
    async def spawn(
        cls, workflow: ResolvedWorkflow, log: LogWriter, run_dir: Path
    ) -> WorkflowProcess:
        """Start the workflow; an OSError (missing command, bad cwd) propagates to the caller."""
        proc = await asyncio.create_subprocess_exec(
            *workflow.argv,
            cwd=workflow.cwd,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **workflow.env},
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
        )
        write_pidfile(run_dir, workflow.name, proc.pid, workflow.argv)
        assert proc.stdout is not None
        return cls(proc, asyncio.create_task(pump(proc.stdout, log)))

    async def wait(self) -> Exit:
        returncode = await self._proc.wait()
        await self._pump
        return Exit.from_returncode(returncode)

    async def terminate(self, grace: float) -> None:
        """SIGTERM to the group, SIGKILL after ``grace`` seconds; returns when all are gone."""
        await end_group(self.pid, grace)


def forget(run_dir: Path, name: str) -> None:
    remove_pidfile(run_dir, name)
