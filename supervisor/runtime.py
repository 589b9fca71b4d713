"""What the supervisor knows about one workflow between events, and its status snapshot."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, datetime

from supervisor.config import ResolvedWorkflow
from supervisor.control import Memory
from supervisor.events import IncidentCause, ProcessState, WorkflowStatus
from supervisor.logs import LogWriter
from supervisor.process import Exit, WorkflowProcess
from supervisor.statedb import Seen, StateReader, StateSnapshot

ExpectedExit = str  # "stop" or "hang": why the supervisor itself ended the process


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(eq=False)
class Incident:
    """One outage: from a crash or hang until a fresh heartbeat after a restart."""

    id: str
    cause: IncidentCause
    since: datetime
    last_detail: str


@dataclass(eq=False)
class Runtime:
    """Mutable per-workflow state; only the supervisor's event loop touches it."""

    workflow: ResolvedWorkflow
    log: LogWriter
    reader: StateReader
    memory: Memory
    state: ProcessState = "stopped"
    process: WorkflowProcess | None = None
    exit_task: asyncio.Task[None] | None = None
    started_at: datetime | None = None
    last_exit: Exit | None = None
    incident: Incident | None = None
    healthy_since: datetime | None = None
    next_restart_at: datetime | None = None
    restart_task: asyncio.Task[None] | None = None
    expected_exit: ExpectedExit | None = None
    snapshot: StateSnapshot = field(default_factory=StateSnapshot)
    seen: Seen | None = None  # what the last read of the state table saw
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def name(self) -> str:
        return self.workflow.name

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
        state = self.state
        if state == "running" and not self.fresh_heartbeat():
            state = "starting"
        snap = self.snapshot
        return WorkflowStatus(
            name=self.name,
            state=state,
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
