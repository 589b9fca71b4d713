"""The chat request being handled, so that a poller's death in the middle of one loses nothing.

The bot sets ``current`` while it handles one Telegram update. The fleet
keeps the update until it is finished (``fleet_updates.payload``), and a new
poller hands the ones its predecessor never finished to its own handlers
again (``FleetNode.replays``). Handling one again must not do its work twice:
each command a request gives that changes something carries a key,
``<update id>:<n>`` in the order the handler asks, and a command with a key
already in ``fleet_commands`` is waited on, not run again. A handler asks in
the same order the second time, so the keys meet.
"""

from __future__ import annotations

import asyncio
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime


@dataclass(slots=True)
class Request:
    """One update in the hands of this node's bot."""

    update_id: int
    received_at: datetime  # when the fleet took it first (a replay: when its predecessor did)
    replay: bool = False
    taken: bool = False  # in the fleet's ledger: to be marked finished when handled
    later: list[asyncio.Task[None]] = field(default_factory=list)  # the reply still coming
    _asked: int = 0

    def next_key(self) -> str:
        self._asked += 1
        return f"{self.update_id}:{self._asked}"


current: ContextVar[Request | None] = ContextVar("fleet_request", default=None)


def next_key() -> str | None:
    """The key for the next changing command of the request being handled (None: none is)."""
    request = current.get()
    return None if request is None else request.next_key()
