"""Chat transports: the only place that knows how a message reaches a person.

The notifier and the command layer speak ``Message`` (HTML text and
buttons); a transport delivers it to Telegram or to the console and
translates failures into three kinds the notifier can act on: wait and retry
(``RetryLater``), retry with backoff (``TransientError``), or give up on this
message (``Undeliverable``).
"""

from __future__ import annotations

import html
import re
import sys
from dataclasses import dataclass
from datetime import timedelta
from typing import Protocol, TextIO

from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup
from telegram.constants import ParseMode
from telegram.error import BadRequest, Forbidden, NetworkError, RetryAfter, TelegramError

from bot.text import Message


@dataclass(frozen=True, slots=True)
class ChatTarget:
    """Where alerts go: a chat, and a forum topic in it if set."""

    chat_id: int
    thread_id: int | None = None

    @property
    def is_group(self) -> bool:
        return self.chat_id < 0


class RetryLater(Exception):
    """The chat asked us to slow down (Telegram's 429 ``retry_after``)."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"retry after {seconds:g}s")
        self.seconds = seconds


class TransientError(Exception):
    """A network error or a 5xx: the same request may well work later."""


class Undeliverable(Exception):
    """This message can never be delivered as it is (a 400 or 403)."""


class MessageGone(Undeliverable):
    """The message to edit no longer exists; send a new one instead."""


class ChatTransport(Protocol):
    async def send(self, target: ChatTarget, message: Message, *, silent: bool = False) -> int:
        """Deliver a new message; returns its message id."""
        ...

    async def edit(self, target: ChatTarget, message_id: int, message: Message) -> None:
        """Replace the text and buttons of a message sent earlier."""
        ...


def keyboard(message: Message) -> InlineKeyboardMarkup | None:
    if not message.buttons:
        return None
    row = [
        InlineKeyboardButton(button.label, callback_data=button.data) for button in message.buttons
    ]
    return InlineKeyboardMarkup([row])


def _seconds(value: float | timedelta) -> float:
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


class TelegramTransport:
    """Delivery through python-telegram-bot's ``Bot`` (HTML parse mode)."""

    def __init__(self, bot: Bot) -> None:
        self.bot = bot

    async def send(self, target: ChatTarget, message: Message, *, silent: bool = False) -> int:
        try:
            sent = await self.bot.send_message(
                chat_id=target.chat_id,
                message_thread_id=target.thread_id,
                text=message.text,
                parse_mode=ParseMode.HTML,
                reply_markup=keyboard(message),
                disable_notification=silent,
                disable_web_page_preview=True,
            )
        except TelegramError as exc:
            raise _translate(exc) from exc
        return sent.message_id

    async def edit(self, target: ChatTarget, message_id: int, message: Message) -> None:
        try:
            await self.bot.edit_message_text(
                chat_id=target.chat_id,
                message_id=message_id,
                text=message.text,
                parse_mode=ParseMode.HTML,
                reply_markup=keyboard(message),
                disable_web_page_preview=True,
            )
        except BadRequest as exc:
            if "not modified" in exc.message.lower():
                return
            if "not found" in exc.message.lower():
                raise MessageGone(exc.message) from exc
            raise _translate(exc) from exc
        except TelegramError as exc:
            raise _translate(exc) from exc

    async def answer(self, query_id: str, text: str) -> None:
        """Answer a button press (its spinner stops, ``text`` pops up briefly)."""
        try:
            await self.bot.answer_callback_query(query_id, text=text)
        except TelegramError as exc:
            raise _translate(exc) from exc


def _translate(exc: TelegramError) -> Exception:
    if isinstance(exc, RetryAfter):
        return RetryLater(_seconds(exc.retry_after))
    if isinstance(exc, BadRequest | Forbidden):
        return Undeliverable(exc.message)
    if isinstance(exc, NetworkError):
        return TransientError(exc.message)
    return TransientError(str(exc))


_TAG = re.compile(r"<[^>]+>")


def html_to_text(text: str) -> str:
    """What an HTML chat message looks like in a terminal."""
    return html.unescape(_TAG.sub("", text))


class ConsoleTransport:
    """Prints messages to a stream; edits are printed again, marked as updates."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stdout
        self._next_id = 0

    def show(self, message: Message, prefix: str = "") -> None:
        lines = html_to_text(message.text).splitlines() or [""]
        body = "\n".join(prefix + line for line in lines)
        buttons = "  ".join(f"[{button.label}]" for button in message.buttons)
        print(body + (f"\n{prefix}{buttons}" if buttons else ""), file=self.stream, flush=True)

    async def send(self, target: ChatTarget, message: Message, *, silent: bool = False) -> int:
        self._next_id += 1
        self.show(message, prefix="! ")
        return self._next_id

    async def edit(self, target: ChatTarget, message_id: int, message: Message) -> None:
        self.show(message, prefix="! (update) ")
