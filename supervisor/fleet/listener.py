"""LISTEN on the fleet's channel over a connection of its own, reconnecting when it drops.

Notifications only make things faster: every consumer also polls on a
timer, so a notification missed while the connection was down (Postgres
keeps none for a listener that is not connected) costs a poll's delay,
never a command or an alert.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import psycopg
from sqlalchemy.engine import make_url

from supervisor.cancelling import cancel
from supervisor.fleet.tables import CHANNEL

log = logging.getLogger("supervisor.fleet")

RECONNECT_MAX_SECONDS = 10.0
TIMEOUT_SECONDS = 5.0


def conninfo(url: str) -> str:
    """The libpq address of a SQLAlchemy URL (``postgresql+psycopg://`` -> ``postgresql://``)."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


class Listener:
    """Calls ``on_payload`` with each notification's payload on the fleet's channel."""

    def __init__(self, url: str, on_payload: Callable[[str], None]) -> None:
        self._conninfo = conninfo(url)
        self._on_payload = on_payload
        self._task: asyncio.Task[None] | None = None
        self.connected = asyncio.Event()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="fleet-listener")

    async def stop(self) -> None:
        await cancel(self._task)
        self._task = None

    async def _run(self) -> None:
        delay = 0.5
        while True:
            try:
                await self._listen()
            except (psycopg.Error, OSError) as exc:
                log.warning("fleet: listening for notifications failed (%s); reconnecting", exc)
            if self.connected.is_set():
                delay = 0.5  # it worked for a while: start backing off afresh
            self.connected.clear()
            await asyncio.sleep(delay)
            delay = min(delay * 2, RECONNECT_MAX_SECONDS)

    async def _listen(self) -> None:
        connection = await psycopg.AsyncConnection.connect(
            self._conninfo,
            autocommit=True,
            connect_timeout=int(TIMEOUT_SECONDS),
            # A dead network must end the wait: libpq's TCP keepalives notice in ~10 s.
            keepalives=1,
            keepalives_idle=5,
            keepalives_interval=2,
            keepalives_count=3,
        )
        async with connection:
            await connection.execute(f"LISTEN {CHANNEL}")
            self.connected.set()
            async for notification in connection.notifies():
                self._on_payload(notification.payload)
