"""What the supervisor knows about one workflow between events, and its status snapshot."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from supervisor.beats import last_beat, later
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
    # The file whose touch is a heartbeat (``supervisor.beats``), and its last touch seen.
    beat_file: Path | None = None
    file_beat: datetime | None = None
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

    @property
    def heartbeat(self) -> datetime | None:
        """The last heartbeat known: the state table's or the beat file's, the later."""
        return later(self.snapshot.heartbeat, self.file_beat)

    def look_at_beat(self) -> bool:
        """Read the beat file's time (a ``stat``); True when it shows a newer heartbeat."""
        if self.beat_file is None:
            return False
        touched = last_beat(self.beat_file)
        newer = touched is not None and (self.file_beat is None or touched > self.file_beat)
        if newer:
            self.file_beat = touched
        return newer

    def fresh_heartbeat(self) -> bool:
        """A heartbeat written by the current process (not left over from an earlier one)."""
        beat = self.heartbeat
        return beat is not None and self.started_at is not None and beat >= self.started_at

    def heartbeat_age(self, now: datetime) -> float | None:
        beat = self.heartbeat
        return None if beat is None else max((now - beat).total_seconds(), 0.0)

    def silence(self, now: datetime) -> float:
        """Seconds since the later of the last heartbeat and the process start: the hang clock."""
        assert self.started_at is not None
        return (now - (later(self.heartbeat, self.started_at) or self.started_at)).total_seconds()

    def cancel_restart(self) -> None:
        if self.restart_task is not None and not self.restart_task.done():
            self.restart_task.cancel()
        self.restart_task = None
        self.next_restart_at = None

    def status(self, now: datetime) -> WorkflowStatus:
        snap = self.snapshot
        if self.process is not None:
            self.look_at_beat()
        return WorkflowStatus(
            name=self.name,
            state=self.state,
            status=snap.status,
            summary=snap.summary,
            heartbeat=self.heartbeat,
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
