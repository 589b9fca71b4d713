"""How each transport shows a bridge turn (``bot.agent.chat.BridgeView``).

Telegram: every message goes through the outbox (committed first, paced,
retried), and a keyed message is edited by the next one with its key, so the
progress message is one message edited in place and a still-waiting edit is
replaced by a newer one. The console prints: a terminal keeps what it
printed, so progress is the new steps, one line each.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from bot.agent.chat import ChatPlace
from bot.outbox import Notifier
from bot.text import Message
from bot.transport import ChatTarget, ConsoleTransport, TelegramTransport
from supervisor.agent.types import Step


class TelegramView:
    """A turn in a Telegram chat."""

    def __init__(self, notifier: Notifier, transport: TelegramTransport) -> None:
        self.notifier = notifier
        self.transport = transport

    async def show(self, chat: ChatPlace, messages: Sequence[Message], key: str | None) -> None:
        """One message keyed ``key``; several each keyed on their own, so a reply to any
        of them can be traced to its session."""
        target = _target(chat)
        if len(messages) == 1 or key is None:
            await self.notifier.reply(target, messages, key)
            return
        for message in messages:
            await self.notifier.reply(target, [message], f"{key}:{uuid.uuid4().hex[:6]}")

    async def progress(self, chat: ChatPlace, key: str, message: Message, new: list[Step]) -> None:
        await self.notifier.reply(_target(chat), [message], key)

    async def typing(self, chat: ChatPlace) -> None:
        await self.transport.typing(_target(chat))


class ConsoleView:
    """A turn in the terminal."""

    def __init__(self, transport: ConsoleTransport) -> None:
        self.transport = transport

    async def show(self, chat: ChatPlace, messages: Sequence[Message], key: str | None) -> None:
        for message in messages:
            self.transport.show(message)

    async def progress(self, chat: ChatPlace, key: str, message: Message, new: list[Step]) -> None:
        for step in new:
            print(f"  {step}", file=self.transport.stream, flush=True)
        if not message.buttons:  # the turn is over: its summary line
            self.transport.show(message)

    async def typing(self, chat: ChatPlace) -> None:
        """A terminal has no typing indicator."""


def _target(chat: ChatPlace) -> ChatTarget:
    assert chat.chat_id is not None, "a Telegram chat has an id"
    return ChatTarget(chat.chat_id, chat.thread_id)
