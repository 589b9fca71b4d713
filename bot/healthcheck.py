"""A dead-man's switch: ping a Healthchecks.io-style URL while the bot's event loop runs.

systemd's watchdog restarts a hung bot, but nothing tells anyone when the
whole host is gone; an outside service that expects a ping every
``HEALTHCHECK_PING_SECONDS`` does. The pings come from a task on the event
loop, so a hung loop falls silent too. At start the bot sends ``URL/start``,
preceded by ``URL/fail`` when its previous run ended in an unclean stop.

A clean stop sends nothing: to the outside service a bot stopped on purpose
is as silent as a dead one, which is what a dead-man's switch should report.
A failing ping never affects the bot; it is logged once per outage, naming
only the URL's host, because the URL's path is the check's secret.
"""

from __future__ import annotations

import asyncio
import logging
from urllib.parse import urlsplit

import httpx

from bot.settings import BotSettings
from supervisor.cancelling import cancel

log = logging.getLogger("bot.healthcheck")
PING_TIMEOUT_SECONDS = 10.0


class Pinger:
    """Pings ``url`` every ``every`` seconds between ``start`` and ``stop``."""

    def __init__(self, url: str, every: float) -> None:
        self.url = url
        self.every = every
        self.host = urlsplit(url).hostname or "?"
        self._failing = False
        self._task: asyncio.Task[None] | None = None

    @classmethod
    def configured(cls, settings: BotSettings) -> Pinger | None:
        """The pinger ``HEALTHCHECK_*`` ask for; None when no URL is set."""
        url = settings.ping_url
        return cls(url, settings.healthcheck_ping_seconds) if url else None

    def start(self, *, previous_failed: bool) -> None:
        """Begin pinging (``/fail`` first if the previous run died); never blocks the start."""
        self._task = asyncio.create_task(self._run(previous_failed))

    async def stop(self) -> None:
        await cancel(self._task)

    async def _run(self, previous_failed: bool) -> None:
        async with httpx.AsyncClient(timeout=PING_TIMEOUT_SECONDS) as client:
            if previous_failed:
                await self._ping(client, "/fail")
            await self._ping(client, "/start")
            while True:
                await asyncio.sleep(self.every)
                await self._ping(client, "")

    async def _ping(self, client: httpx.AsyncClient, suffix: str) -> None:
        try:
            response = await client.get(self.url + suffix)
            response.raise_for_status()
        except Exception as exc:  # whatever it is, the next ping comes anyway
            # Only the type and status: an httpx message may quote the URL.
            if not self._failing:
                status = (
                    f" {exc.response.status_code}" if isinstance(exc, httpx.HTTPStatusError) else ""
                )
                log.warning(
                    "healthcheck ping to %s failed (%s%s); logged once until a ping works",
                    self.host,
                    type(exc).__name__,
                    status,
                )
            self._failing = True
            return
        if self._failing:
            log.info("healthcheck pings to %s work again", self.host)
        self._failing = False
