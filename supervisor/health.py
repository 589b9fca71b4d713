"""Watching the workflows' state tables: errors, status changes, recoveries, hangs.

The supervisor's periodic jobs call in here. The monitor reads every state
table that changed (off the event loop), turns what it sees into events, and
hands a hang back to the supervisor, which owns the processes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import datetime

from supervisor.control import Memory
from supervisor.events import (
    ErrorReported,
    Event,
    ProcessState,
    Recovered,
    StateReadable,
    StateUnreadable,
    StatusChanged,
)
from supervisor.process import WorkflowProcess
from supervisor.runtime import Runtime, utcnow
from supervisor.settings import SupervisorSettings
from supervisor.statedb import StateRead, StateSnapshot

FINAL_READ_TRIES = 5
FINAL_READ_PAUSE_SECONDS = 0.05

log = logging.getLogger("supervisor")


class HealthMonitor:
    """Reads state tables and publishes what changed; reports hangs to ``on_hang``."""

    def __init__(
        self,
        runtimes: Mapping[str, Runtime],
        settings: SupervisorSettings,
        *,
        publish: Callable[[Event, Runtime | None], None],
        remember: Callable[[Runtime], None],
        transition: Callable[[Runtime, ProcessState, str], None],
        on_hang: Callable[[Runtime, WorkflowProcess], None],
    ) -> None:
        self._runtimes = runtimes
        self._settings = settings
        self._publish = publish
        self._remember = remember
        self._transition = transition
        self._on_hang = on_hang
        self._reads_in_flight = 0
        self._closed = False

    async def close(self) -> None:
        """Take no more reads, and wait (briefly) for one in a worker thread to finish.

        A job the scheduler started just before its shutdown must neither be
        cancelled mid-read at loop teardown nor reopen the closed readers.
        """
        self._closed = True
        for _ in range(200):
            if not self._reads_in_flight:
                return
            await asyncio.sleep(0.01)

    def refresh(self, runtime: Runtime, *, force: bool = False) -> bool:
        """Re-read the state table now, if its files changed; True when something was read."""
        known = None if force else runtime.seen
        read = runtime.reader.read_if_changed(known, runtime.memory.last_error_id)
        return read is not None and self._apply_read(runtime, read)

    async def read_after_exit(self, runtime: Runtime) -> None:
        """The ended process's last word: its final error and status come before its exit
        event, so a read that fails (a lock held a moment longer) is tried a few times."""
        for _ in range(FINAL_READ_TRIES):
            self.refresh(runtime, force=True)
            if runtime.unreadable_since is None:
                break
            await asyncio.sleep(FINAL_READ_PAUSE_SECONDS)
        self.observe(runtime)

    def _apply_read(self, runtime: Runtime, read: StateRead) -> bool:
        """Take a read; one that failed keeps what was known (and is tried again next poll)."""
        seen, snapshot = read
        runtime.reads += 1
        problem = snapshot.problem
        if problem and snapshot.hidden:  # its health is unknown: never taken for a hang
            runtime.seen = None
            runtime.snapshot = _with_problem(runtime.snapshot, problem)
            if runtime.unreadable_since is None:
                runtime.unreadable_since = utcnow()
            return False
        if snapshot.heartbeat is None and runtime.snapshot.heartbeat is not None:
            # A malformed heartbeat proves no life, but does not erase the last valid one.
            snapshot = replace(snapshot, heartbeat=runtime.snapshot.heartbeat)
        if runtime.unreadable_since is not None:
            if runtime.unreadable_reported:
                lasted = (utcnow() - runtime.unreadable_since).total_seconds()
                readable = StateReadable(
                    workflow=runtime.name, time=utcnow(), unreadable_seconds=lasted
                )
                self._publish(readable, None)
            runtime.unreadable_since, runtime.unreadable_reported = None, False
        runtime.seen = seen
        runtime.snapshot = snapshot
        return True

    async def read_all(self) -> None:
        """Read every changed state table in a worker thread, then act on what changed.

        With a hundred workflows the reads add up to tens of milliseconds; off
        the event loop they never delay a chat command.
        """
        if self._closed:
            return
        runtimes = list(self._runtimes.values())
        known = [(rt.reader, rt.seen, rt.memory.last_error_id) for rt in runtimes]
        taken = [rt.reads for rt in runtimes]
        self._reads_in_flight += 1
        try:
            reads = await asyncio.to_thread(
                lambda: [reader.read_if_changed(seen, after) for reader, seen, after in known]
            )
        finally:
            self._reads_in_flight -= 1
        for runtime, read, before in zip(runtimes, reads, taken, strict=True):
            if runtime.reads != before:
                continue  # a newer read (an exit's) came in meanwhile: this one is stale
            try:
                if read is not None and self._apply_read(runtime, read):
                    self.observe(runtime)
            except Exception:  # one broken workflow must not stop the others' checks
                log.exception("reading the state of %s failed", runtime.name)

    def _report_errors(self, runtime: Runtime) -> bool:
        """One event per new write of an error: each entry of the error log when the
        workflow keeps one, else each write of ``last_error`` (a value merely read again
        is not new). Returns whether memory changed without an event to save it."""
        snapshot, remembered, now = runtime.snapshot, runtime.memory, utcnow()
        if snapshot.keeps_error_log:
            new = [(id_, text) for id_, text in snapshot.errors if id_ > remembered.last_error_id]
        elif snapshot.last_error and _rewritten(snapshot, remembered):
            new = [(remembered.last_error_id, snapshot.last_error)]
        else:
            new = []
        unsaved = snapshot.last_error_version != remembered.last_error_version
        remembered.last_error_version = snapshot.last_error_version
        for error_id, text in new:
            remembered.last_error_id = error_id
            repeat = remembered.count_error(text, now)
            event = ErrorReported(workflow=runtime.name, time=now, text=text, repeat=repeat)
            self._publish(event, runtime)  # seen and recorded in one transaction
        return unsaved and not new

    def observe(self, runtime: Runtime) -> None:
        """Publish what the last read shows that was not announced yet."""
        snapshot, remembered, now = runtime.snapshot, runtime.memory, utcnow()
        if self._report_errors(runtime):
            self._remember(runtime)
        if snapshot.status and snapshot.status != remembered.last_status_seen:
            old, remembered.last_status_seen = remembered.last_status_seen, snapshot.status
            changed = StatusChanged(
                workflow=runtime.name,
                time=now,
                old=old,
                new=snapshot.status,
                summary=snapshot.summary,
            )
            self._publish(changed, runtime)
        if runtime.state == "starting" and runtime.process and runtime.fresh_heartbeat():
            runtime.first_heartbeat = snapshot.heartbeat
            self._transition(runtime, "running", "first heartbeat")
        self._maybe_recovered(runtime, now)

    def _maybe_recovered(self, runtime: Runtime, now: datetime) -> None:
        """Close the incident once the restarted process has heartbeaten for a while.

        Waiting ``recovery_seconds`` keeps a crash loop (start, one heartbeat,
        crash) inside one incident instead of a recovered note per cycle.
        """
        incident, came_up = runtime.incident, runtime.first_heartbeat
        if not (incident and runtime.process and runtime.started_at) or runtime.expected_exit:
            return
        up = (now - runtime.started_at).total_seconds()
        if came_up is None or came_up <= incident.since or up < self._settings.recovery_seconds:
            return
        self.recover(runtime, now)

    def recover(self, runtime: Runtime, now: datetime) -> None:
        """End the open incident as recovered: its process came back (and may have finished)."""
        incident = runtime.incident
        if incident is None:
            return
        came_up = runtime.first_heartbeat or now
        runtime.incident = None
        runtime.healthy_since = now
        recovered = Recovered(
            workflow=runtime.name,
            time=now,
            incident=incident.id,
            # Down from the failure until the new process first heartbeat.
            down_seconds=max((came_up - incident.since).total_seconds(), 0.0),
            cause=incident.cause,
            failures=incident.failures,
            last_detail=incident.last_detail,
        )
        self._publish(recovered, runtime)

    async def check(self) -> None:
        """Every ``check_interval_seconds``: hangs; attempts reset after a healthy stretch."""
        await self.read_all()
        if self._closed:
            return
        for runtime in self._runtimes.values():
            try:
                if runtime.process is None or runtime.expected_exit or runtime.lock.locked():
                    continue
                now = utcnow()
                self._maybe_recovered(runtime, now)
                if runtime.unreadable_since is not None:
                    self._report_unreadable(runtime, now)
                elif runtime.silence(now) > runtime.workflow.hang_threshold_seconds:
                    self._on_hang(runtime, runtime.process)
                elif (
                    runtime.healthy_since
                    and runtime.memory.restarts
                    and (
                        (now - runtime.healthy_since).total_seconds()
                        >= self._settings.healthy_reset_seconds
                    )
                ):
                    runtime.memory.restarts = 0
                    runtime.healthy_since = None
                    self._remember(runtime)
            except Exception:
                log.exception("check of %s failed", runtime.name)

    def _report_unreadable(self, runtime: Runtime, now: datetime) -> None:
        """Once a state DB has stayed unreadable for a check interval, say so, once."""
        assert runtime.unreadable_since is not None
        lasted = (now - runtime.unreadable_since).total_seconds()
        if runtime.unreadable_reported or lasted < self._settings.check_interval_seconds:
            return
        runtime.unreadable_reported = True
        reason = runtime.snapshot.problem or "unreadable"
        self._publish(StateUnreadable(workflow=runtime.name, time=now, reason=reason), None)


def _rewritten(snapshot: StateSnapshot, remembered: Memory) -> bool:
    """``last_error`` holds a text not reported yet, or was written again since."""
    if snapshot.last_error != remembered.last_error_seen:
        return True
    known = remembered.last_error_version
    return known is not None and snapshot.last_error_version != known


def _with_problem(snapshot: StateSnapshot, problem: str) -> StateSnapshot:
    return replace(snapshot, problem=problem)
