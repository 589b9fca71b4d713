"""What the supervisor knows about one workflow between events, and its status snapshot."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

from supervisor.config import ResolvedWorkflow
from supervisor.control import Incident, Memory
from supervisor.events import ProcessState, WorkflowStatus
from supervisor.logs import LogWriter
from supervisor.policy import Decision
from supervisor.process import Exit, WorkflowProcess
from supervisor.statedb import Seen, StateReader, StateSnapshot

ExpectedExit = Literal["stop", "hang"]  # why the supervisor itself ended the process


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(eq=False)
class Runtime:
    """Mutable per-workflow state; only the supervisor's event loop touches it."""

    workflow: ResolvedWorkflow
    log: LogWriter
    reader: StateReader
    memory: Memory
    state: ProcessState = "stopped"  # changed only by Supervisor._to (supervisor.restarts)
    process: WorkflowProcess | None = None
    exit_task: asyncio.Task[None] | None = None
    started_at: datetime | None = None
    first_heartbeat: datetime | None = None  # of the current process: it came up then
    last_exit: Exit | None = None
    healthy_since: datetime | None = None
    next_restart_at: datetime | None = None
    restart_task: asyncio.Task[None] | None = None
    expected_exit: ExpectedExit | None = None
    after_hang: Decision | None = None  # decided when the hang was reported, done at its exit
    snapshot: StateSnapshot = field(default_factory=StateSnapshot)
    seen: Seen | None = None  # what the last read of the state table saw
    reads: int = 0  # reads taken so far: a slower read begun before the last one is stale
    unreadable_since: datetime | None = None  # the state DB could not be read since then
    unreadable_reported: bool = False
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def name(self) -> str:
        return self.workflow.name

    @property
    def incident(self) -> Incident | None:
        """The open outage, kept in memory so it continues across a restart."""
        return self.memory.incident

    @incident.setter
    def incident(self, value: Incident | None) -> None:
        self.memory.incident = value

    def fresh_heartbeat(self) -> bool:
        """A heartbeat written by the current process (not left over from an earlier one)."""
        beat = self.snapshot.heartbeat
        return beat is not None and self.started_at is not None and beat >= self.started_at

    def heartbeat_age(self, now: datetime) -> float | None:
        beat = self.snapshot.heartbeat
        return None if beat is None else max((now - beat).total_seconds(), 0.0)

    def silence(self, now: datetime) -> float:
        """Seconds since the later of the last heartbeat and the process start: the hang clock."""
        assert self.started_at is not None
        last = self.started_at
        if self.snapshot.heartbeat is not None and self.snapshot.heartbeat > last:
            last = self.snapshot.heartbeat
        return (now - last).total_seconds()

    def cancel_restart(self) -> None:
        if self.restart_task is not None and not self.restart_task.done():
            self.restart_task.cancel()
        self.restart_task = None
        self.next_restart_at = None

    def status(self, now: datetime) -> WorkflowStatus:
        snap = self.snapshot
        return WorkflowStatus(
            name=self.name,
            state=self.state,
            status=snap.status,
            summary=snap.summary,
            heartbeat=snap.heartbeat,
            heartbeat_age=self.heartbeat_age(now),
            last_error=snap.last_error,
            paused=self.state == "paused",
            pid=self.process.pid if self.process else None,
            started_at=self.started_at if self.process else None,
            restarts=self.memory.restarts,
            max_restarts=self.workflow.max_restart_attempts,
            next_restart_at=self.next_restart_at,
            exit_code=self.last_exit.code if self.last_exit else None,
            db_problem=snap.problem,
        )
