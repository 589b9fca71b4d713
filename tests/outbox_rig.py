"""A notifier on a real SQLite outbox, a chat that records what reaches it, and a hand-moved clock.

For the rules that depend on time (late notes, mutes running out, reminders,
the digest's timetable): the test moves ``Clock`` and wakes the worker, and
waits for the chat to show the result, never for the wall clock.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, tzinfo

import sqlalchemy as sa

from bot.outbox import Notifier, Pacing
from bot.text import Message
from bot.transport import ChatTarget
from tests.conditions import wait_until

CHAT = ChatTarget(4242)
UNPACED = Pacing(per_chat_seconds=0, per_group_seconds=0, max_backoff_seconds=0.05)
START = 1_764_000_000.0  # 2025-11-24 16:00 UTC, a Monday in winter (CET = UTC+1)


class Clock:
    """Epoch seconds that move only when the test says so."""

    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@dataclass
class Delivered:
    message: Message
    silent: bool
    edit_of: int | None = None


@dataclass
class RecordingChat:
    """A ``ChatTransport`` that keeps every send and edit, in order."""

    delivered: list[Delivered] = field(default_factory=list)

    async def send(self, target: ChatTarget, message: Message, *, silent: bool = False) -> int:
        self.delivered.append(Delivered(message, silent))
        return len(self.delivered)

    async def edit(self, target: ChatTarget, message_id: int, message: Message) -> None:
        self.delivered.append(Delivered(message, True, edit_of=message_id))

    @property
    def texts(self) -> list[str]:
        return [d.message.text for d in self.delivered]

    async def wait_for(self, count: int) -> list[Delivered]:
        """Wait until ``count`` messages have arrived; fails if more did."""
        await wait_until(lambda: len(self.delivered) >= count)
        assert len(self.delivered) == count, self.texts
        return self.delivered


@contextlib.asynccontextmanager
async def notifier_on(
    engine: sa.Engine, chat: RecordingChat, clock: Clock, tz: tzinfo = UTC
) -> AsyncIterator[Notifier]:
    notifier = Notifier(engine, chat, CHAT, pacing=UNPACED, clock=clock, timezone=tz)
    await notifier.start()
    try:
        yield notifier
    finally:
        await notifier.stop(flush_timeout=0.5)
