"""Fan-out of supervisor events to any number of async subscribers.

A subscription is registered when ``subscribe()`` is called, not when it is
first iterated, so a consumer that subscribes before ``startup()`` sees every
event. Each subscriber has its own unbounded queue: a slow consumer (the bot
during a Telegram outage) never blocks the supervisor or other consumers, and
durability is the consumer's job (the bot's outbox).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from supervisor.events import Event


class Subscription:
    """An async iterator of events; ``close()`` ends it."""

    def __init__(self, bus: EventBus) -> None:
        self._bus = bus
        self._queue: asyncio.Queue[Event | None] = asyncio.Queue()

    def _put(self, event: Event | None) -> None:
        self._queue.put_nowait(event)

    def close(self) -> None:
        self._bus._subscribers.discard(self)
        self._put(None)

    def __aiter__(self) -> AsyncIterator[Event]:
        return self

    async def __anext__(self) -> Event:
        event = await self._queue.get()
        if event is None:
            raise StopAsyncIteration
        return event


class EventBus:
    """Publish from anywhere on the event loop; every subscriber gets every event."""

    def __init__(self) -> None:
        self._subscribers: set[Subscription] = set()

    def subscribe(self) -> Subscription:
        subscription = Subscription(self)
        self._subscribers.add(subscription)
        return subscription

    def publish(self, event: Event) -> None:
        for subscription in list(self._subscribers):
            subscription._put(event)

    def close(self) -> None:
        for subscription in list(self._subscribers):
            subscription.close()
