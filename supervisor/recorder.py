"""The supervisor's one writer of the control DB: events with their memory, in order.

Every event is committed together with the memory it changed ("error X was
seen") by one worker thread, so the event loop (which also feeds the systemd
watchdog) never waits on the database and writes keep their order. An event
is published on the bus only after its commit, carrying its id, so a
consumer that keeps a cursor over the log (``bot.forwarding``) misses
nothing across a kill. If the database refuses a write the event is still
published, without an id: late or doubled, never lost.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace
from typing import Any

from supervisor.bus import EventBus
from supervisor.control import ControlDB, Memory, Spent
from supervisor.events import Event
from supervisor.faults import crash_point

log = logging.getLogger("supervisor")


class Recorder:
    """Records and publishes; until ``open`` (no control DB yet) it only publishes."""

    def __init__(self, bus: EventBus) -> None:
        self._bus = bus
        self._control: ControlDB | None = None
        self._writer: ThreadPoolExecutor | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def open(self, control: ControlDB) -> None:
        """Start writing to ``control`` (from the event loop that will publish)."""
        self._control = control
        self._loop = asyncio.get_running_loop()
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="control-db")

    async def written(self) -> None:
        """Wait until every write submitted so far is done (and its event published)."""
        if self._writer is not None:
            await asyncio.wrap_future(self._writer.submit(lambda: None))

    async def close(self) -> None:
        if self._writer is not None:
            await self.written()
            self._writer.shutdown(wait=True)
            self._writer = None

    def remember(self, name: str, memory: Memory) -> None:
        """Save a workflow's memory (a copy: the loop goes on changing the original)."""
        control, copy = self._control, memory.copy()
        if control is None or self._writer is None:
            return
        future = self._writer.submit(control.save_memory, name, copy)
        future.add_done_callback(_log_failure(f"could not save {name}"))

    def spend(self, spent: Spent, memory: Memory) -> None:
        """Record an increase of a workflow's usage with the memory that counted it."""
        control, copy = self._control, memory.copy()
        if control is None or self._writer is None:
            return
        future = self._writer.submit(control.record_spend, spent, copy)
        future.add_done_callback(_log_failure(f"could not record {spent.workflow}'s spend"))

    def publish(self, event: Event, memory: Memory | None = None) -> None:
        """Record ``event`` (with ``memory``, in one transaction), then publish it."""
        log.info(
            "%s %s: %s",
            event.workflow,
            event.kind,
            event.detail.splitlines()[0] if event.detail else "",
        )
        control, loop, writer = self._control, self._loop, self._writer
        if control is None or loop is None or writer is None:
            self._bus.publish(event)
            return
        copy = memory.copy() if memory is not None else None
        future = writer.submit(_record, control, event, copy)

        def recorded(done: Future[int]) -> None:
            if not loop.is_closed():
                loop.call_soon_threadsafe(self._deliver, event, done)

        future.add_done_callback(recorded)

    def _deliver(self, event: Event, done: Future[int]) -> None:
        try:
            event = replace(event, id=done.result())
        except Exception as exc:
            log.error("control DB: could not record %s event: %s", event.kind, exc)
        self._bus.publish(event)


def _record(control: ControlDB, event: Event, memory: Memory | None) -> int:
    crash_point(f"before-event-commit:{event.kind}")
    return control.record(event, memory)


def _log_failure(what: str) -> Callable[[Future[Any]], None]:
    def check(done: Future[Any]) -> None:
        exc = done.exception()
        if exc is not None:
            log.error("control DB: %s: %s", what, exc)

    return check
