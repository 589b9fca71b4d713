"""Watching the workflows' state tables: errors, status changes, recoveries, hangs.

The monitor reads a state table when its files change (``supervisor.statewatch``
says which, within milliseconds of the write), always off the event loop,
turns what it sees into events, and hands a hang back to the supervisor, which
owns the processes. Polling remains the fallback: every ``error_poll_seconds``
for a workflow the watch does not cover (no inotify, a directory not there yet)
or whose last read failed, and once a minute for all of them at a hang check
(only a ``stat`` each when nothing changed), so that a change the watch missed
is read within a minute at the latest. A heartbeat may also be a touch
of the workflow's beat file (``supervisor.beats``), which nothing reports: it
is looked at by the hang check, by ``/status``, and every ``error_poll_seconds``
while a start waits for its first beat.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
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
from supervisor.statedb import CLOCK_TICK_NS, Seen, StateRead, StateSnapshot
from supervisor.statewatch import Batch, StateWatch

FINAL_READ_TRIES = 5
FINAL_READ_PAUSE_SECONDS = 0.05
# How long a read showing only a running workflow's heartbeat may wait in the watch
# thread for company: the heartbeat /status shows is this much older at worst (the
# hang check takes the held reads first); errors, status changes, a first heartbeat
# are handed over at once.
HEARTBEAT_HANDOFF_SECONDS = 1.0
# The hang check reads every table this often (a ``stat`` each when unchanged), in case
# the watch missed a change; in between, only those it does not cover.
FULL_READ_SECONDS = 60.0
# A table whose writer never pauses for CLOCK_TICK_NS is read anyway this long after
# its first change (and again once it settles).
SETTLE_LIMIT_NS = 2 * CLOCK_TICK_NS
# A change still unread (a commit "being made", frames a rolled-back transaction left)
# is given up this long after it was noticed: the fallback poll remains.
PENDING_LIMIT_NS = 1_000_000_000

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
        on_usage: Callable[[Runtime], None],
    ) -> None:
        self._runtimes = runtimes
        self._settings = settings
        self._publish = publish
        self._remember = remember
        self._transition = transition
        self._on_hang = on_hang
        self._on_usage = on_usage
        self._reads_in_flight = 0
        self._closed = False
        self._watch: StateWatch | None = None
        # What the watch thread reads: a copy, so that it never iterates the live mapping.
        self._watched: dict[str, Runtime] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._poller: asyncio.Task[None] | None = None
        self._poked = asyncio.Event()
        self._full_read_at = 0.0  # monotonic: when the hang check next reads every table
        # The number of the read last taken of each workflow (``StateSnapshot.number``):
        # one with a smaller number saw the database earlier, and is dropped (``_take``).
        self._taken: dict[str, int] = {}
        # The watch thread's: the reads it holds back (``_read_changed``; the hang check
        # takes them too, under the lock), what its newest read of each workflow saw,
        # and the changes it has not read yet: (first noticed, when to look), time_ns.
        self._held: dict[str, tuple[Runtime, StateRead]] = {}
        self._held_since: float | None = None
        self._held_lock = threading.Lock()
        self._latest: dict[str, Seen] = {}
        self._pending: dict[str, tuple[int, int]] = {}

    def start(self) -> None:
        """Watch the state files, and poll what the watch does not cover (``_poll``)."""
        if self._poller is None and not self._closed:
            self._loop = asyncio.get_running_loop()
            self._poller = asyncio.create_task(self._poll())

    async def close(self) -> None:
        """Take no more reads, and wait (briefly) for one in a worker thread to finish.

        A job the scheduler started just before its shutdown must neither be
        cancelled mid-read at loop teardown nor reopen the closed readers.
        """
        self._closed = True
        if self._watch is not None:
            await asyncio.to_thread(self._watch.stop)  # its batch in progress ends first
        for _ in range(200):
            if not self._reads_in_flight:
                break
            await asyncio.sleep(0.01)
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller

    async def _poll(self) -> None:
        """Start the watch, read what changed before it began, then every
        ``error_poll_seconds`` poll the workflows it does not cover and look at the beat
        files of those starting. With none such it sleeps until ``poke``d (a start, a
        failed read), or for ``check_interval_seconds`` (a watch lost meanwhile is seen
        then)."""
        watch = self._watch = StateWatch(self._read_changed)
        self._watched = dict(self._runtimes)
        paths = {name: rt.reader.path for name, rt in self._watched.items()}
        if await asyncio.to_thread(watch.start):
            await asyncio.to_thread(watch.track, paths)
        await self.read_all()  # a write between the start-up reads and the watch
        busy = True
        while not self._closed:
            settings = self._settings
            idle = settings.check_interval_seconds if not busy else settings.error_poll_seconds
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._poked.wait(), idle)
            self._poked.clear()
            watched = self._covered()
            due = []
            busy = False
            for name, runtime in self._runtimes.items():
                if runtime.state == "starting":
                    busy = True
                    if runtime.look_at_beat():  # its first beat may be a touch of its file
                        self._came_up(runtime)
                if _polled(name, runtime, watched):
                    due.append(runtime)
            if due:
                busy = True
                await self._read(due)

    def poke(self) -> None:
        """Poll at ``error_poll_seconds`` again: a workflow is starting, or a read failed."""
        self._poked.set()

    def _covered(self) -> frozenset[str]:
        """The workflows whose writes the watch sees now."""
        return frozenset() if self._watch is None else self._watch.covered()

    def _read_changed(self, batch: Batch) -> float | None:
        """In the watch thread: read the workflows whose files changed (None: all), and
        hand the reads to the event loop; returns when to be called again, if ever.

        A table is read when its files changed, and again while a commit was
        being made as it read, or where that cannot be told, once its newest
        write is ``CLOCK_TICK_NS`` old (``StateReader.read_settled``). A read that shows
        nothing but a running workflow's heartbeat moving is held back
        (``HEARTBEAT_HANDOFF_SECONDS``, or until a read with news comes): with a
        hundred workflows beating every second, waking the loop for each batch
        would cost more than the reads. The thread reads, never writes, a
        runtime's fields: a read overtaken by a newer one is dropped on the loop
        (``_take``), and an older error id only asks for entries already
        reported, which ``_report_errors`` filters out.
        """
        watched, loop, pending = self._watched, self._loop, self._pending
        if self._closed or loop is None:
            return None
        now = time.time_ns()
        for name in watched if batch is None else batch:
            if name in watched and name not in pending:
                pending[name] = (now, now)  # (first change, when to look): look now
        if batch and not batch <= self._covered():  # a watch lost (its directory went)
            with contextlib.suppress(RuntimeError):  # the loop closed: nobody to poll
                loop.call_soon_threadsafe(self.poke)  # polled from now on, and soon
        news = batch is None
        for name, (first, due) in list(pending.items()):
            runtime = watched.get(name)
            if runtime is None:  # no longer configured
                del pending[name]
                continue
            if due > now:
                continue
            seen = self._latest.get(name, runtime.seen)
            read, again, settling = runtime.reader.read_settled(
                seen, runtime.memory.last_error_id, force=now - first >= SETTLE_LIMIT_NS
            )
            # Read before it settled (its writer never pauses): a new round, read again later.
            since = now if read is not None and settling else first
            if again is not None and now - since < PENDING_LIMIT_NS:
                pending[name] = (since, again)
            else:  # done; or a commit "being made" this long was abandoned: the poll remains
                del pending[name]
            if read is None:
                continue
            if read[0] is None or read[1].hidden:  # failed: it proves nothing to skip by
                self._latest.pop(name, None)
            else:
                self._latest[name] = read[0]
            with self._held_lock:
                self._held[name] = (runtime, read)  # the newest read of each wins
            news = news or not _only_heartbeat(runtime, read)
        return self._hand_over(loop, news, pending)

    def _hand_over(
        self,
        loop: asyncio.AbstractEventLoop,
        news: bool,
        pending: Mapping[str, tuple[int, int]],
    ) -> float | None:
        """Give the held reads to the loop if one has news or they waited long enough;
        the seconds until the next read is due or the held ones must go."""
        wake = None
        with self._held_lock:
            handed: list[tuple[Runtime, StateRead]] = []
            if self._held:
                now = time.monotonic()
                if self._held_since is None:
                    self._held_since = now
                wait = self._held_since + HEARTBEAT_HANDOFF_SECONDS - now
                if news or wait <= 0:
                    handed = self._release_held()
                else:
                    wake = wait
        if handed:
            with contextlib.suppress(RuntimeError):  # the loop closed: nobody to tell
                loop.call_soon_threadsafe(
                    self._take, [rt for rt, _ in handed], [read for _, read in handed]
                )
        if pending:
            due = (min(due for _, due in pending.values()) - time.time_ns()) / 1e9
            wake = due if wake is None else min(wake, due)
        return None if wake is None else max(wake, 0.0)

    def _release_held(self) -> list[tuple[Runtime, StateRead]]:
        """The reads held back, no longer held (with ``_held_lock``)."""
        handed = list(self._held.values())
        self._held.clear()
        self._held_since = None
        return handed

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
        self._taken[runtime.name] = snapshot.number
        problem = snapshot.problem
        if problem and snapshot.hidden:  # its health is unknown: never taken for a hang
            runtime.seen = None
            runtime.snapshot = _with_problem(runtime.snapshot, problem)
            if runtime.unreadable_since is None:
                runtime.unreadable_since = utcnow()
                self.poke()
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
        the event loop they never delay a chat command. A watched table costs
        a ``stat`` here unless it changed; a directory not watched yet is
        tried again first, and the heartbeats the watch holds back are taken.
        """
        await self._read(list(self._runtimes.values()), retrack=True)

    async def _read(self, runtimes: Sequence[Runtime], *, retrack: bool = False) -> None:
        if self._closed:
            return
        watch = self._watch
        paths = None
        if retrack and watch is not None and watch.alive:
            self._watched = dict(self._runtimes)
            paths = {name: rt.reader.path for name, rt in self._watched.items()}
        # The hang check: a database left alone a while is closed, read or not.
        idle = [rt.reader for rt in self._runtimes.values()] if retrack else []
        watched = self._covered()
        latest = self._latest
        # A watched table unchanged since the watch's newest read of it is not read again
        # (one whose last read failed is).
        known = [
            (
                rt.reader,
                latest.get(rt.name, rt.seen)
                if rt.name in watched and rt.unreadable_since is None
                else rt.seen,
                rt.memory.last_error_id,
                rt.name in watched,
            )
            for rt in runtimes
        ]

        def read() -> tuple[list[tuple[Runtime, StateRead]], list[StateRead | None]]:
            if paths is not None and watch is not None:
                watch.track(paths)
            held = []
            if retrack:  # the hang check: the heartbeats the watch holds back count
                with self._held_lock:
                    held = self._release_held()
            for reader in idle:
                reader.close_if_idle()
            return held, [
                reader.read_if_changed(seen, after, watched=watched)
                for reader, seen, after, watched in known
            ]

        self._reads_in_flight += 1
        try:
            held, reads = await asyncio.to_thread(read)
        finally:
            self._reads_in_flight -= 1
        self._take([rt for rt, _ in held], [read for _, read in held])
        self._take(runtimes, reads)

    def _take(self, runtimes: Sequence[Runtime], reads: Sequence[StateRead | None]) -> None:
        """Act on reads; one older than the last taken of its workflow is dropped."""
        for runtime, read in zip(runtimes, reads, strict=True):
            if read is None or read[1].number <= self._taken.get(runtime.name, 0):
                continue  # a later read (an exit's) came in meanwhile: this one is stale
            try:
                if self._apply_read(runtime, read):
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
        self._on_usage(runtime)
        if runtime.state == "starting":
            runtime.look_at_beat()
            self._came_up(runtime)
        self._maybe_recovered(runtime, now)

    def _came_up(self, runtime: Runtime) -> None:
        """A start whose first heartbeat (the table's, or a touch of its file) is known."""
        if runtime.state == "starting" and runtime.process and runtime.fresh_heartbeat():
            runtime.first_heartbeat = runtime.heartbeat
            self._transition(runtime, "running", "first heartbeat")

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
        """Every ``check_interval_seconds``: hangs; attempts reset after a healthy stretch.

        Every table is read first (a ``stat`` when unchanged) once a ``FULL_READ_SECONDS``,
        in case the watch missed a change; in between, those it does not cover.
        """
        if time.monotonic() >= self._full_read_at:
            self._full_read_at = time.monotonic() + FULL_READ_SECONDS
            await self.read_all()
        else:
            watched = self._covered()
            polled = [rt for name, rt in self._runtimes.items() if _polled(name, rt, watched)]
            await self._read(polled, retrack=True)
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
                elif self._silent(runtime, now):
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

    @staticmethod
    def _silent(runtime: Runtime, now: datetime) -> bool:
        """Silent past its hang threshold, its beat file looked at only when the last beat
        known is that old (a ``stat`` per threshold, not per check)."""
        threshold = runtime.workflow.hang_threshold_seconds
        if runtime.silence(now) <= threshold:
            return False
        return not runtime.look_at_beat() or runtime.silence(now) > threshold

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


def _polled(name: str, runtime: Runtime, watched: frozenset[str]) -> bool:
    """Not watched, or its last read failed (a lock held): no change notice may come."""
    return runtime.unreadable_since is not None or name not in watched


def _only_heartbeat(runtime: Runtime, read: StateRead) -> bool:
    """The read shows a running, healthy workflow whose heartbeat alone may have moved:
    nothing for the loop to announce or decide now. Read from the watch thread."""
    seen, new = read
    old = runtime.snapshot
    return (
        seen is not None
        and runtime.state == "running"
        and runtime.incident is None
        and runtime.unreadable_since is None
        and new.problem is None
        and old.problem is None
        and not new.errors
        and new.status == old.status
        and new.summary == old.summary
        and new.last_error == old.last_error
        and new.last_error_version == old.last_error_version
        and new.paused == old.paused
        and new.keeps_error_log == old.keeps_error_log
        and new.usage == old.usage
    )


def _with_problem(snapshot: StateSnapshot, problem: str) -> StateSnapshot:
    return replace(snapshot, problem=problem)
