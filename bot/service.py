"""The pieces both transports share: supervisor, notifier, alerts, audit, commands.

``Service`` owns their order of starting and stopping, so Telegram mode and
console mode differ only in how messages come in and go out.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime

from bot.agent.chat import BridgeView, ChatBridge
from bot.agent.views import ConsoleView
from bot.alerts import AlertComposer
from bot.audit import AuditLog
from bot.commands import CommandRouter, Follow
from bot.digest import DigestScheduler
from bot.forwarding import EventForwarder
from bot.healthcheck import Pinger
from bot.lifecycle import Lifecycle, downtime_note
from bot.outbox import Alert, Notifier, Pacing
from bot.settings import Alerting, default_alerting
from bot.transport import ChatTarget, ChatTransport, ConsoleTransport
from supervisor.agent.bridge import AgentBridge
from supervisor.core import Supervisor
from supervisor.dbengine import make_engine

log = logging.getLogger("bot")


class Service:
    """Supervisor plus notifier plus command router, started and stopped together."""

    def __init__(
        self,
        supervisor: Supervisor,
        transport: ChatTransport,
        target: ChatTarget,
        *,
        pacing: Pacing,
        follow: Follow | None = None,
        pinger: Pinger | None = None,
        alerting: Alerting | None = None,
        bridge_view: Callable[[Notifier], BridgeView] | None = None,
    ) -> None:
        """``bridge_view`` makes what shows bridge turns (``bot.agent.views``) over the
        notifier; the console's when not given."""
        self.supervisor = supervisor
        self.engine = make_engine(supervisor.settings.control_db_url)
        alerting = alerting or default_alerting()
        self.notifier = Notifier(
            self.engine, transport, target, pacing=pacing, timezone=alerting.timezone
        )
        self.audit = AuditLog(self.engine)
        self.router = CommandRouter(
            supervisor, self.notifier, self.audit, follow=follow, timezone=alerting.timezone
        )
        composer = AlertComposer(remind_after=alerting.renotify_seconds or None)  # 0: never
        self.forwarder = EventForwarder(self.engine, composer, self.notifier)
        agents = supervisor.agent_settings
        bridge = AgentBridge(supervisor, self.engine, agents, redactor=supervisor.redactor)
        self.chat = ChatBridge(
            bridge,
            supervisor,
            (bridge_view or (lambda _: ConsoleView(ConsoleTransport())))(self.notifier),
            self.audit,
            approval_seconds=agents.agent_approval_seconds,
        )
        self._forwarding: asyncio.Task[None] | None = None
        self.lifecycle = Lifecycle(self.engine, pinger=pinger)
        self.digest = DigestScheduler(
            self.engine,
            supervisor.status,
            self.notifier,
            period=supervisor.settings.status_interval_seconds,
            at=alerting.digest_at,
            tz=alerting.timezone,
        )

    async def start(self, hello: str | None = None) -> None:
        """Start delivery first (so nothing is missed), then the workflows.

        The hello gains a line about the previous run's end (how long the
        bot was down, and whether it was killed).
        """
        previous = await self.lifecycle.start()
        await self.notifier.start()
        await self.chat.interrupted()
        await self.supervisor.open()  # the event log exists before the forwarder reads it
        await asyncio.to_thread(self.forwarder.open)
        subscription = self.supervisor.events()
        self._forwarding = asyncio.create_task(self.forwarder.run(subscription))
        await self.supervisor.startup()
        self.digest.start()
        note = downtime_note(previous, datetime.now(UTC), len(self.supervisor.reaped))
        hello = "\n".join(text for text in (hello, note) if text)
        if hello:
            await self.notifier.enqueue(_lifecycle(hello))

    async def stop(self, goodbye: str | None = None, flush_timeout: float = 5.0) -> None:
        """Stop the workflows (their runs resume next start), say goodbye, flush, close."""
        await self.chat.close()
        await self.digest.stop()
        await self.supervisor.shutdown()
        if self._forwarding is not None:
            await self._forwarding
        if goodbye:
            await self.notifier.enqueue(_lifecycle(goodbye))
        await self.notifier.stop(flush_timeout)
        await self.lifecycle.stop()
        await asyncio.to_thread(self.engine.dispose)  # closing a Postgres connection may block


def _lifecycle(text: str) -> Alert:
    """Up and down notes are quiet but come through a mute: after a goodbye nothing else will."""
    return Alert(text, loud=False, critical=True, mergeable=False)
