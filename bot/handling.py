"""Handling Telegram updates so that a fleet poller's death in the middle of one loses nothing.

PTB takes an update from Telegram and confirms it with its next
``getUpdates``, long before the handler is done: a poller killed in
between would leave a ``/restart`` done on its node but never answered, or
never done at all. So in a fleet each update is handled inside a
``supervisor.fleet.requests.Request``: the gate takes it into the fleet's
ledger with its JSON (``FleetNode.take``), it is marked finished once its
answer (and the slow part of it, like a ``/why`` verdict) is in the outbox,
and a node that becomes the poller hands the ones left unfinished to its
handlers again (``replay``). Their changing commands are keyed, so a replay
answers with what was done rather than doing it again.

One update at a time, as PTB's default processor does.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from telegram import Update
from telegram.ext import Application, BaseUpdateProcessor

from supervisor.fleet import requests
from supervisor.fleet.node import FleetNode

log = logging.getLogger("bot")


class FleetUpdates(BaseUpdateProcessor):
    """PTB's update processor, each update a ``Request`` finished in the fleet's ledger."""

    def __init__(self, node: Callable[[], FleetNode | None]) -> None:
        super().__init__(max_concurrent_updates=1)
        self._node = node
        self._replaying: dict[int, datetime] = {}  # update id: when its predecessor took it
        self._finishing: set[asyncio.Task[None]] = set()

    async def initialize(self) -> None:
        """Nothing to open: the ledger is the fleet node's."""

    async def shutdown(self) -> None:
        """Nothing to close; a finish still waiting on a slow reply is left to a replay."""

    async def do_process_update(self, update: object, coroutine: Awaitable[Any]) -> None:
        if not isinstance(update, Update):
            await coroutine
            return
        taken_at = self._replaying.pop(update.update_id, None)
        request = requests.Request(
            update.update_id, taken_at or datetime.now(UTC), replay=taken_at is not None
        )
        token = requests.current.set(request)
        try:
            await coroutine
        finally:
            requests.current.reset(token)
        node = self._node()
        if not request.taken or node is None:
            return
        if not request.later:
            await _finish(node, request.update_id)
            return
        task = asyncio.create_task(_finish(node, request.update_id, request.later))
        self._finishing.add(task)
        task.add_done_callback(self._finishing.discard)

    async def replay(self, app: Application[Any, Any, Any, Any, Any, Any], node: FleetNode) -> None:
        """Queue the updates another run took and never finished (each one logged)."""
        try:
            unfinished = await node.replays()
        except sa.exc.SQLAlchemyError as exc:
            log.warning("cannot look for updates left unfinished: %s", exc)
            return
        for update_id, payload, taken_at in unfinished:
            log.warning("update %d was left unfinished by its poller: handling it", update_id)
            self._replaying[update_id] = taken_at
            await app.update_queue.put(Update.de_json(json.loads(payload), app.bot))


async def _finish(
    node: FleetNode, update_id: int, later: list[asyncio.Task[None]] | None = None
) -> None:
    """Mark it handled once its slow replies are in the outbox too (best effort: a mark that
    fails leaves it to be handled again by the next poller, its commands not run twice)."""
    if later:
        await asyncio.gather(*later, return_exceptions=True)
    try:
        await node.finish(update_id)
    except sa.exc.SQLAlchemyError as exc:
        log.warning("cannot mark update %d handled: %s", update_id, exc)
