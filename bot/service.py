"""The pieces both transports share: supervisor, notifier, alerts, audit, commands.

``Service`` owns their order of starting and stopping, so Telegram mode and
console mode differ only in how messages come in and go out.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime

from sqlalchemy.exc import SQLAlchemyError

from bot.agent.chat import BridgeView, ChatBridge
from bot.agent.views import ConsoleView
from bot.alerts import AlertComposer
from bot.audit import AuditLog
from bot.commands import CommandRouter, Follow
from bot.digest import DigestScheduler
from bot.fleet import node_alert, takeover_alert
from bot.forwarding import EventForwarder
from bot.healthcheck import Pinger
from bot.lifecycle import Lifecycle, downtime_note
from bot.outbox import Alert, Notifier, Pacing
from bot.outbox_store import OutboxStore
from bot.settings import Alerting, default_alerting
from bot.transport import ChatTarget, ChatTransport, ConsoleTransport
from supervisor.agent.bridge import AgentBridge
from supervisor.api import HostSupervisor, SupervisorAPI
from supervisor.cancelling import cancel
from supervisor.dbengine import make_engine
from supervisor.fleet.node import FleetNode
from supervisor.fleet.registry import NodeChange
from supervisor.fleet.remote import FleetSupervisor
from supervisor.observe.observer import Observer
from supervisor.settings import FleetSettings

log = logging.getLogger("bot")
# How often the fleet's poller looks for rows other nodes wrote into the shared outbox
# should their notification be missed (each node NOTIFYs the poller after a commit), and
# for events of headless nodes (python -m supervisor run) to turn into alerts.
FLEET_OUTBOX_POLL_SECONDS = 5.0
HEADLESS_POLL_SECONDS = 0.5


class Service:
    """Supervisor plus notifier plus command router, started and stopped together."""

    def __init__(
        self,
        supervisor: HostSupervisor,
        transport: ChatTransport,
        target: ChatTarget,
        *,
        pacing: Pacing,
        follow: Follow | None = None,
        pinger: Pinger | None = None,
        alerting: Alerting | None = None,
        bridge_view: Callable[[Notifier], BridgeView] | None = None,
        poller: bool = False,
        metrics_addr: str | None = None,
    ) -> None:
        """``bridge_view`` makes what shows bridge turns (``bot.agent.views``) over the
        notifier; the console's when not given. ``poller``: in a fleet, this node may be
        elected to poll Telegram (the console never is: it serves only its terminal).
        ``metrics_addr``: where ``/metrics``, ``/healthz`` and ``/readyz`` listen (off: None)."""
        self.supervisor = supervisor
        settings = supervisor.settings
        self.engine = make_engine(settings.control_db_url)
        alerting = alerting or default_alerting()
        self.timezone = alerting.timezone
        # A fleet (a Postgres control DB): this node's part in it, and the fleet's API.
        self.node: FleetNode | None = None
        self.api: SupervisorAPI = supervisor
        if settings.fleet:
            self.node = FleetNode(
                self.engine,
                settings.control_db_url,
                settings.node,
                FleetSettings(),
                supervisor,
                can_lead=poller,
                timezone=alerting.timezone,
            )
            self.node.on_node_change = self._node_changed
            self.node.on_takeover = self._took_over
            self.api = FleetSupervisor(supervisor, self.node)
        # This node's workflows and events; ``metrics.port`` is the port it listens on.
        self.metrics: Observer | None = None
        if metrics_addr:
            self.metrics = Observer(
                metrics_addr,
                supervisor,
                self.engine,
                settings.control_db_url,
                settings.node,
                pending=OutboxStore(self.engine, 0.0).count_pending,
            )
        self.notifier = Notifier(
            self.engine,
            transport,
            target,
            pacing=pacing,
            timezone=alerting.timezone,
            idle_poll_seconds=FLEET_OUTBOX_POLL_SECONDS if self.node else None,
            on_delivered=self.metrics.delivered if self.metrics else None,
            on_saved=self.node.outbox_written if self.node else None,
        )
        if self.node is not None:
            self.node.on_outbox = self.notifier.look
        self.audit = AuditLog(self.engine)
        self.router = CommandRouter(
            self.api, self.notifier, self.audit, follow=follow, timezone=alerting.timezone
        )
        composer = AlertComposer(  # renotify 0: never
            remind_after=alerting.renotify_seconds or None, tz=alerting.timezone
        )
        self.composer = composer
        self._headless: asyncio.Task[None] | None = None
        self.forwarder = EventForwarder(
            self.engine,
            composer,
            self.notifier,
            # Each node forwards its own workflows' events, from a cursor of its own.
            node=settings.node if self.node else None,
            workflows=supervisor.names if self.node else None,
        )
        agents = supervisor.agent_settings
        bridge = AgentBridge(self.api, self.engine, agents, redactor=supervisor.redactor)
        self.chat = ChatBridge(
            bridge,
            self.api,
            (bridge_view or (lambda _: ConsoleView(ConsoleTransport())))(self.notifier),
            self.audit,
            approval_seconds=agents.agent_approval_seconds,
        )
        self._forwarding: asyncio.Task[None] | None = None
        self.lifecycle = Lifecycle(
            self.engine, pinger=pinger, host=settings.node if self.node else None
        )
        self.digest = DigestScheduler(
            self.engine,
            self.api.status,
            self.notifier,
            period=supervisor.settings.status_interval_seconds,
            at=alerting.digest_at,
            tz=alerting.timezone,
        )

    async def start(self, hello: str | None = None, *, deliver: bool = True) -> None:
        """Start delivery first (so nothing is missed), then the workflows.

        The hello gains a line about the previous run's end (how long the
        bot was down, and whether it was killed). In a fleet the node joins
        first (a name another node runs refuses the start, ``FleetRefused``);
        ``deliver`` False leaves delivery and the digest to ``lead``, which
        the node's poller election drives. ``/readyz`` says 200 once the workflows started.
        """
        if self.metrics is not None:
            await self.metrics.start()  # first: it counts every event, /readyz 503 meanwhile
        try:
            await self._start(hello, deliver=deliver)
        except BaseException:
            if self.metrics is not None:
                await self.metrics.stop()  # a refused start leaves no port taken
            raise

    async def _start(self, hello: str | None, *, deliver: bool) -> None:
        await self.supervisor.open()  # the event log exists before the forwarder reads it
        if self.node is not None:
            await self.node.join()
        previous = await self.lifecycle.start()
        await self.notifier.start(deliver=deliver)
        await self.chat.interrupted()
        await asyncio.to_thread(self.forwarder.open)
        subscription = self.supervisor.events()
        self._forwarding = asyncio.create_task(self.forwarder.run(subscription))
        await self.supervisor.startup()
        if self.node is not None:
            await self.node.start()
        if deliver:
            self.digest.start()
        if self.metrics is not None:
            self.metrics.ready()
        note = downtime_note(previous, datetime.now(UTC), len(self.supervisor.reaped))
        hello = "\n".join(text for text in (hello, note) if text)
        if hello:
            await self.notifier.enqueue(_lifecycle(hello))

    async def stop(self, goodbye: str | None = None, flush_timeout: float = 5.0) -> None:
        """Stop the workflows (their runs resume next start), say goodbye, flush, close."""
        if self.metrics is not None:
            self.metrics.stopping()
        await self._stop_headless()
        await self.chat.close()
        await self.digest.stop()
        await self.supervisor.shutdown()
        if self._forwarding is not None:
            await self._forwarding
        if goodbye:
            await self.notifier.enqueue(_lifecycle(goodbye))
        await self.notifier.stop(flush_timeout)
        if self.node is not None:
            await self.node.leave()
        await self.lifecycle.stop()
        if self.metrics is not None:
            await self.metrics.stop()
        await asyncio.to_thread(self.engine.dispose)  # closing a Postgres connection may block

    async def lead(self, leading: bool) -> None:
        """This node became the fleet's poller (it delivers, sends the digest), or stopped."""
        if leading:
            self.notifier.start_delivery()
            self.digest.start()
            self._headless = asyncio.create_task(self._forward_headless(), name="headless")
        else:
            await self._stop_headless()
            await self.digest.stop()
            await self.notifier.stop_delivery()

    async def _stop_headless(self) -> None:
        await cancel(self._headless)
        self._headless = None

    async def _forward_headless(self) -> None:
        """While this node polls: the events of headless nodes become alerts here, from each
        one's own cursor, as its bot would have made them."""
        assert self.node is not None
        forwarders: dict[str, EventForwarder] = {}
        while True:
            try:
                for node, first_event, names in await self.node.headless():
                    forwarder = forwarders.get(node)
                    if forwarder is None or forwarder.workflows != names:
                        forwarder = EventForwarder(
                            self.engine, self.composer, self.notifier, node=node, workflows=names
                        )
                        await asyncio.to_thread(forwarder.open, first_event)
                        forwarders[node] = forwarder
                    await forwarder.replay()
            except SQLAlchemyError as exc:
                log.warning("fleet: cannot forward the headless nodes' events: %s", exc)
            await asyncio.sleep(HEADLESS_POLL_SECONDS)

    async def _node_changed(self, change: NodeChange) -> None:
        await self.notifier.enqueue(node_alert(change, self.timezone))

    async def _took_over(self, previous: str) -> None:
        assert self.node is not None
        await self.notifier.enqueue(takeover_alert(self.node.name, previous))


def _lifecycle(text: str) -> Alert:
    """Up and down notes are quiet but come through a mute: after a goodbye nothing else will."""
    return Alert(text, loud=False, critical=True, mergeable=False)
