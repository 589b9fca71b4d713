"""One node of the fleet: it joins, heartbeats, publishes, answers commands, and may lead.

The loops, each on a timer and woken early by a notification:

- heartbeat: stamp the node's row every ``beat_seconds``; while leading,
  also turn silent nodes into "down" and returning ones into "back"
  (``on_node_change``, which the bot makes an alert);
- lease (nodes that may lead): hold or take the poller's lease
  (``supervisor.fleet.lease``); ``leading`` is set while it is held and
  cleared the moment it is lost or cannot be vouched for;
- commands: claim and run the commands queued for this node;
- publish: after any event of a local workflow, store its status, so the
  poller's ``/status`` shows it without asking (and every half node timeout
  anyway, as a safety net, not on every heartbeat).

Every DB call runs on a worker thread; a failing one is logged and tried
again on the next tick, and only the lease's failure has a consequence
(stepping down).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import socket
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert

from supervisor import dbschema
from supervisor.api import SupervisorAPI, SupervisorError
from supervisor.cancelling import cancel
from supervisor.events import SpendSummary
from supervisor.fleet import commands, lease, registry, requests
from supervisor.fleet.listener import Listener
from supervisor.fleet.registry import Identity, NodeChange, NodeInfo, Published
from supervisor.fleet.tables import FLEET_SCHEMA, updates
from supervisor.settings import FleetSettings

log = logging.getLogger("supervisor.fleet")
T = TypeVar("T")

COMMAND_POLL_SECONDS = 1.0  # the fallback when a notification is missed
SPEND_PUBLISH_SECONDS = 5.0  # how stale another node's spend may be in /cost and /status
PUBLISH_DEBOUNCE_SECONDS = 0.2
KEEP_SECONDS = 86400.0  # answered commands and handled update ids
# A new poller handles again an update its predecessor took this recently and never
# finished; an older one is left (its reply would come too late to mean anything).
REPLAY_SECONDS = 120.0
OUTBOX_WRITTEN = "outbox"  # the NOTIFY payload of a node that wrote into the shared outbox


class FleetNode:
    """This node's part in the fleet; ``supervisor`` is the local one it answers for."""

    def __init__(
        self,
        engine: sa.Engine,
        url: str,
        node: str,
        settings: FleetSettings,
        supervisor: SupervisorAPI,
        *,
        can_lead: bool,
        forwards: bool = True,
        timezone: tzinfo = UTC,
    ) -> None:
        """``forwards`` False: a headless node, whose events the poller turns into alerts;
        ``timezone``: the one times are shown in (the chat's ``ALERT_TIMEZONE``)."""
        self.engine = engine
        self.me = Identity(node, uuid.uuid4().hex, socket.gethostname(), os.getpid(), forwards)
        self.settings = settings
        self.times = lease.LeaseTimes.for_failover(settings.failover_seconds)
        self.beat_seconds = min(5.0, settings.node_timeout_seconds / 6)
        self.timezone = timezone
        self._supervisor = supervisor
        self._can_lead = can_lead
        self.leading = asyncio.Event()
        self.following = asyncio.Event()
        self.following.set()
        self.on_node_change: Callable[[NodeChange], Awaitable[None]] | None = None
        # Called when this node took the lease over from another (a failover, or a restart).
        self.on_takeover: Callable[[str], Awaitable[None]] | None = None
        # Called (on the loop) when another node committed rows into the shared outbox.
        self.on_outbox: Callable[[], None] | None = None
        self._telling: asyncio.Task[None] | None = None
        self._tell_again = False
        self._listener = Listener(url, self._on_payload)
        self._commands_due = asyncio.Event()
        self._publish_due: set[str] = set()
        self._published_spend: dict[str, SpendSummary | None] = {}  # as the DB has it
        self._publish_wake = asyncio.Event()
        self._answers: dict[int, asyncio.Event] = {}
        self.owners: dict[str, str] = {}  # every workflow of the fleet -> its node (a cache)
        self._refreshing: set[asyncio.Task[None]] = set()
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def name(self) -> str:
        return self.me.node

    # -- joining and leaving -----------------------------------------------------------------

    async def join(self) -> None:
        """Register and claim this node's workflow names, or raise ``FleetRefused``."""
        names = list(self._supervisor.names)
        try:
            await self._db(dbschema.settle, FLEET_SCHEMA)
        except dbschema.SchemaTooNew as exc:
            raise registry.FleetRefused(str(exc)) from exc
        taken = await self._db(self._join, names)
        self.owners = await self._db(registry.owners)
        for name in taken:
            log.warning("fleet: workflow %s now runs on %s", name, self.name)

    def _join(self, conn: sa.Connection, names: list[str]) -> list[str]:
        taken = registry.join(conn, self.me, names, self.settings.node_timeout_seconds)
        commands.notify(conn, "joined:" + self.name)  # the others learn its names at once
        abandoned = commands.abandon_running(conn, self.name)
        if abandoned:
            log.warning("fleet: %d commands were cut off by this node's restart", abandoned)
        return taken

    async def start(self) -> None:
        """Publish every status, then run the loops (after the workflows have started)."""
        await self._publish(list(self._supervisor.names))
        self._listener.start()
        loops: list[Coroutine[Any, Any, None]] = [
            self._heartbeat(),
            self._serve_commands(),
            self._publisher(),
        ]
        if self._can_lead:
            loops.append(self._hold_lease())
        self._tasks = [asyncio.create_task(loop, name="fleet") for loop in loops]

    async def leave(self) -> None:
        """Stop the loops, hand the lease over and say this node stopped cleanly."""
        await cancel(*self._tasks)
        self._tasks = []
        await self._listener.stop()
        self._step_down("stopping")
        try:
            await self._publish(list(self._supervisor.names))
            await self._db(self._leave)
        except sa.exc.SQLAlchemyError as exc:
            log.warning("fleet: could not say this node stopped: %s", exc)

    def _leave(self, conn: sa.Connection) -> None:
        lease.release(conn, self.name)
        registry.leave(conn, self.me)

    # -- what the poller asks ----------------------------------------------------------------

    async def view(self) -> tuple[list[NodeInfo], Published]:
        infos, published = await self._db(registry.view, self.settings.node_timeout_seconds)
        self.owners = {status.name: node for node, status in published}
        return infos, published

    async def headless(self) -> list[tuple[str, int, list[str]]]:
        """Headless nodes: name, the event id their alerts start after, their workflows."""
        return await self._db(registry.headless)

    async def owner(self, workflow: str) -> str | None:
        return await self._db(registry.owner, workflow)

    async def call(self, node: str, verb: str, args: dict[str, Any]) -> Any:
        """Run ``verb`` on ``node`` (this one too) and return its answer; ``SupervisorError``
        if it cannot. One that changes something, asked within a chat request, is keyed
        and recorded (``supervisor.fleet.requests``): asked again, it is waited on."""
        spec = commands.VERBS[verb]
        key = requests.next_key() if spec.mutates else None
        here = node == self.name
        if here and key is None:
            return await spec.run(self._supervisor, args)
        if not here:
            infos, _ = await self.view()
            info = next((i for i in infos if i.node == node), None)
            if info is None or not info.alive:
                since = "" if info is None else f" since {_clock(info, self.timezone)}"
                raise SupervisorError(f"node {node} is {_off(info)}{since}")
        state = commands.RUNNING if here else commands.QUEUED
        submit = functools.partial(commands.submit, request=key, state=state)
        command_id, new = await self._db(submit, node, verb, args)
        if here and new:
            state, result = await self._run_command(commands.Claimed(command_id, verb, args))
            return commands.answer(verb, state, result, node)
        return await self._outcome(command_id, verb, node)

    async def _outcome(self, command_id: int, verb: str, node: str) -> Any:
        """Wait for a command's answer (woken by its ``done`` notification)."""
        done = self._answers.setdefault(command_id, asyncio.Event())
        wait = commands.VERBS[verb].wait_seconds
        deadline = time.monotonic() + wait
        try:
            while True:
                state, result = await self._db(commands.outcome, command_id)
                if state not in (commands.QUEUED, commands.RUNNING):
                    return commands.answer(verb, state, result, node)
                left = deadline - time.monotonic()
                if left <= 0:
                    raise SupervisorError(f"node {node} did not answer within {wait:.0f}s")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(done.wait(), min(left, COMMAND_POLL_SECONDS))
                done.clear()
        finally:
            self._answers.pop(command_id, None)

    # -- the chat's requests, across failovers -----------------------------------------------

    async def take(self, request: requests.Request, payload: str) -> bool:
        """Whether this update is this node's to handle: new to the fleet (now taken, and
        kept until ``finish``), or one this node replays; False: another node took it."""
        if request.replay:
            request.taken = True
            return True
        request.taken = await self._db(self._take_update, request.update_id, payload)
        return request.taken

    def _take_update(self, conn: sa.Connection, update_id: int, payload: str) -> bool:
        taken = conn.execute(
            insert(updates)
            .values(
                update_id=update_id,
                node=self.name,
                instance=self.me.instance,
                payload=payload,
                handled_at=sa.func.now(),
            )
            .on_conflict_do_nothing(index_elements=[updates.c.update_id])
            .returning(updates.c.update_id)
        ).first()
        return taken is not None

    async def finish(self, update_id: int) -> None:
        """The update was handled and its answer is in the outbox: nothing to replay."""
        await self._db(self._finish_update, update_id)

    @staticmethod
    def _finish_update(conn: sa.Connection, update_id: int) -> None:
        conn.execute(
            sa.update(updates)
            .where(updates.c.update_id == update_id)
            .values(finished_at=sa.func.now(), payload=None)
        )

    async def replays(self) -> list[tuple[int, str, datetime]]:
        """The updates another run took in the last ``REPLAY_SECONDS`` and never finished,
        now this run's: id, the update as JSON, when it was first taken."""
        return await self._db(self._claim_unfinished)

    def _claim_unfinished(self, conn: sa.Connection) -> list[tuple[int, str, datetime]]:
        recent = sa.func.now() - timedelta(seconds=REPLAY_SECONDS)
        rows = conn.execute(
            sa.update(updates)
            .where(
                updates.c.finished_at.is_(None),
                updates.c.payload.is_not(None),
                updates.c.handled_at > recent,
                sa.or_(updates.c.instance.is_(None), updates.c.instance != self.me.instance),
            )
            .values(node=self.name, instance=self.me.instance)
            .returning(updates.c.update_id, updates.c.payload, updates.c.handled_at)
        ).all()
        return sorted((int(row[0]), str(row[1]), row[2]) for row in rows)

    # -- the loops -------------------------------------------------------------------------

    async def _heartbeat(self) -> None:
        while True:
            try:
                if not await self._db(registry.beat, self.me):
                    log.error("fleet: another run took over node %s's row", self.name)
                self.owners = await self._db(registry.owners)
                if self.leading.is_set():
                    await self._watch_nodes()
                await self._db(self._prune)
            except sa.exc.SQLAlchemyError as exc:
                log.warning("fleet: heartbeat failed: %s", exc)
            await asyncio.sleep(self.beat_seconds)

    async def _watch_nodes(self) -> None:
        changes = await self._db(registry.down_changes, self.settings.node_timeout_seconds)
        for change in changes:
            log.warning("fleet: node %s is %s", change.node, "down" if change.down else "back")
            if self.on_node_change is not None:
                await self.on_node_change(change)

    def _prune(self, conn: sa.Connection) -> None:
        commands.prune(conn, KEEP_SECONDS)
        cutoff = sa.func.now() - timedelta(seconds=KEEP_SECONDS)
        conn.execute(sa.delete(updates).where(updates.c.handled_at < cutoff))

    async def _hold_lease(self) -> None:
        vouched = -self.times.fence  # monotonic time the last renewal that worked was sent
        while True:
            sent = time.monotonic()
            try:
                held = await self._db(lease.hold, self.name, self.times.ttl)
            except sa.exc.SQLAlchemyError as exc:
                log.warning("fleet: cannot renew the poller's lease: %s", exc)
            else:
                if held is None:
                    self._step_down("another node holds the lease")
                else:
                    vouched = sent
                    await self._step_up(held)
            if time.monotonic() - vouched >= self.times.fence:
                self._step_down("the lease could not be renewed in time")
            await asyncio.sleep(self.times.interval)

    async def _step_up(self, held: lease.Held) -> None:
        if self.leading.is_set():
            return
        log.info("fleet: node %s polls Telegram now (term %d)", self.name, held.term)
        self.following.clear()
        self.leading.set()
        if held.taken_from is not None and self.on_takeover is not None:
            await self.on_takeover(held.taken_from)

    def _step_down(self, why: str) -> None:
        if self.leading.is_set():
            log.warning("fleet: node %s stops polling Telegram: %s", self.name, why)
            self.leading.clear()
            self.following.set()

    async def _serve_commands(self) -> None:
        running: set[asyncio.Task[tuple[str, str]]] = set()
        while True:
            self._commands_due.clear()
            try:
                for claimed in await self._db(commands.claim, self.name):
                    task = asyncio.create_task(self._run_command(claimed))
                    running.add(task)
                    task.add_done_callback(running.discard)
            except sa.exc.SQLAlchemyError as exc:
                log.warning("fleet: cannot read the command queue: %s", exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._commands_due.wait(), COMMAND_POLL_SECONDS)

    async def _run_command(self, claimed: commands.Claimed) -> tuple[str, str]:
        """Run it here and store its answer (tried three times): its state and answer."""
        state, result = await commands.execute(self._supervisor, claimed)
        for attempt in range(3):
            try:
                await self._db(commands.finish, claimed.id, state, result)
                break
            except sa.exc.SQLAlchemyError as exc:
                log.warning("fleet: cannot store command %d's answer: %s", claimed.id, exc)
                await asyncio.sleep(1.0 + attempt)
        return state, result

    async def _publisher(self) -> None:
        events = self._supervisor.events()
        watcher = asyncio.create_task(self._collect(events))
        spending = asyncio.create_task(self._watch_spend())
        try:
            while True:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(
                        self._publish_wake.wait(), self.settings.node_timeout_seconds / 2
                    )
                await asyncio.sleep(PUBLISH_DEBOUNCE_SECONDS)
                self._publish_wake.clear()
                due = sorted(self._publish_due) or list(self._supervisor.names)
                self._publish_due.clear()
                try:
                    await self._publish(due)
                except sa.exc.SQLAlchemyError as exc:
                    log.warning("fleet: cannot publish statuses: %s", exc)
                    self._publish_due.update(due)
        finally:
            await cancel(watcher, spending)
            events.close()

    async def _collect(self, events: Any) -> None:
        async for event in events:
            self._publish_due.add(event.workflow)
            self._publish_wake.set()

    async def _watch_spend(self) -> None:
        """Spend moves without an event (a workflow's agents at work): a workflow whose
        spend changed is published within ``SPEND_PUBLISH_SECONDS``, for /cost and /status
        on the poller."""
        while True:
            await asyncio.sleep(SPEND_PUBLISH_SECONDS)
            for status in await self._supervisor.status():
                if self._published_spend.get(status.name) != status.spend:
                    self._publish_due.add(status.name)
                    self._publish_wake.set()

    async def _publish(self, names: Sequence[str]) -> None:
        order = {name: index for index, name in enumerate(self._supervisor.names)}
        statuses = [
            (order[status.name], status)
            for status in await self._supervisor.status()
            if status.name in names
        ]
        await self._db(registry.publish, self.name, statuses)
        self._published_spend.update((status.name, status.spend) for _, status in statuses)

    # -- plumbing ----------------------------------------------------------------------------

    def outbox_written(self) -> None:
        """This node committed rows into the shared outbox: wake the poller (one NOTIFY in
        flight at a time, and one more after it for what came meanwhile); the poller's own
        rows need none, and a missed one waits for its fallback poll."""
        if self.leading.is_set():
            return
        if self._telling is not None:
            self._tell_again = True
            return
        self._telling = asyncio.get_running_loop().create_task(self._tell())

    async def _tell(self) -> None:
        try:
            while True:
                self._tell_again = False
                await self._db(commands.notify, OUTBOX_WRITTEN)
                if not self._tell_again:
                    return
        except sa.exc.SQLAlchemyError as exc:
            log.debug("fleet: cannot tell the poller of new outbox rows: %s", exc)
        finally:
            self._telling = None

    def _on_payload(self, payload: str) -> None:
        kind, _, rest = payload.partition(":")
        if kind == OUTBOX_WRITTEN:
            if self.leading.is_set() and self.on_outbox is not None:
                self.on_outbox()
        elif kind == "cmd" and rest == self.name:
            self._commands_due.set()
        elif kind == "joined" and rest != self.name:
            self._refresh_owners()
        elif kind == "done" and rest.isdigit():
            done = self._answers.get(int(rest))
            if done is not None:
                done.set()

    def _refresh_owners(self) -> None:
        async def refresh() -> None:
            with contextlib.suppress(sa.exc.SQLAlchemyError):
                self.owners = await self._db(registry.owners)

        task = asyncio.get_running_loop().create_task(refresh())
        self._refreshing.add(task)
        task.add_done_callback(self._refreshing.discard)

    async def _db(self, call: Callable[..., T], *args: Any) -> T:
        def run() -> T:
            with self.engine.begin() as conn:
                return call(conn, *args)

        return await asyncio.to_thread(run)


def _off(info: NodeInfo | None) -> str:
    if info is None:
        return "not known to the fleet"
    return "stopped" if info.stopped else "down"


def _clock(info: NodeInfo, timezone: tzinfo) -> str:
    return info.seen_at.astimezone(timezone).strftime("%H:%M")
