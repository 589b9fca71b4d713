"""The pieces both transports share: supervisor, notifier, alerts, audit, commands.

``Service`` owns their order of starting and stopping, so Telegram mode and
console mode differ only in how messages come in and go out.
"""

from __future__ import annotations

import asyncio
import logging

from bot.alerts import AlertComposer
from bot.audit import AuditLog
from bot.commands import CommandRouter, Follow
from bot.outbox import Alert, Notifier, Pacing
from bot.transport import ChatTarget, ChatTransport
from supervisor.bus import Subscription
from supervisor.core import Supervisor
from supervisor.dbengine import make_engine
from supervisor.events import Event

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
    ) -> None:
        self.supervisor = supervisor
        self.engine = make_engine(supervisor.settings.control_db_url)
        self.notifier = Notifier(self.engine, transport, target, pacing=pacing)
        self.audit = AuditLog(self.engine)
        self.router = CommandRouter(supervisor, self.notifier, self.audit, follow=follow)
        self.composer = AlertComposer()
        self._forwarding: asyncio.Task[None] | None = None

    async def start(self, hello: str | None = None) -> None:
        """Start delivery first (so nothing is missed), then the workflows."""
        await self.notifier.start()
        subscription = self.supervisor.events()
        self._forwarding = asyncio.create_task(self._forward(subscription))
        await self.supervisor.startup()
        if hello:
            self.notifier.enqueue(_lifecycle(hello))

    async def _forward(self, subscription: Subscription) -> None:
        async for event in subscription:
            self.alert(event)

    def alert(self, event: Event) -> None:
        try:
            for alert in self.composer.alerts(event):
                self.notifier.enqueue(alert)
        except Exception:
            log.exception("could not queue an alert for %s %s", event.workflow, event.kind)

    async def stop(self, goodbye: str | None = None, flush_timeout: float = 5.0) -> None:
        """Stop the workflows (their runs resume next start), say goodbye, flush, close."""
        await self.supervisor.shutdown()
        if self._forwarding is not None:
            await self._forwarding
        if goodbye:
            self.notifier.enqueue(_lifecycle(goodbye))
        await self.notifier.stop(flush_timeout)
        self.engine.dispose()


def _lifecycle(text: str) -> Alert:
    """Up and down notes are quiet but come through a mute: after a goodbye nothing else will."""
    return Alert(text, loud=False, critical=True, mergeable=False)
