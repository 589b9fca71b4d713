"""Chat transports: the only place that knows how a message reaches a person.

The notifier and the command layer speak ``Message`` (HTML text and
buttons); a transport delivers it to Telegram or to the console and
translates failures into three kinds the notifier can act on: wait and retry
(``RetryLater``), retry with backoff (``TransientError``), or give up on this
message (``Undeliverable``).
"""

from __future__ import annotations

import asyncio
import html
import itertools
import re
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Literal, Protocol, TextIO, TypeVar

from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup, InputFile
from telegram.constants import ChatAction, ParseMode
from telegram.error import BadRequest, Forbidden, NetworkError, RetryAfter, TelegramError

from bot.text import Button, Message

T = TypeVar("T")
BUTTONS_PER_ROW = 3  # a row of names a thumb can still tell apart
TELEGRAM_ROW_LIMIT = 8


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


FileKind = Literal["document", "photo"]


@dataclass(frozen=True, slots=True)
class Document:
    """A file for the chat: a document (``/logs``) or a photo (``/chart``, a PNG), sent once,
    directly, never stored in the outbox. ``unsent``: where to look instead, said (HTML) by
    the line that reports it could not be sent."""

    filename: str
    data: bytes
    caption: str  # HTML
    kind: FileKind = "document"
    unsent: str = "/tail shows its end"


class ChatTransport(Protocol):
    async def send(self, target: ChatTarget, message: Message, *, silent: bool = False) -> int:
        """Deliver a new message; returns its message id."""
        ...

    async def edit(self, target: ChatTarget, message_id: int, message: Message) -> None:
        """Replace the text and buttons of a message sent earlier."""
        ...


def _subject(button: Button) -> str:
    """The workflow a button acts on: ``mute:api:1h`` -> ``api``; ``help`` -> ``""``."""
    return button.data.split(":")[1] if ":" in button.data else ""


def _chunks(buttons: Sequence[Button], size: int) -> list[list[Button]]:
    return [list(buttons[start : start + size]) for start in range(0, len(buttons), size)]


def button_rows(buttons: Sequence[Button]) -> list[list[Button]]:
    """Lay a message's buttons out for a phone; ``Message`` has no rows of its own.

    Neighbours acting on the same workflow share a row (an alert's Restart,
    Tail, Mute, Ack; a burst's row per workflow); a run of buttons each for
    another workflow (a picker, ``/status``) is laid out three to a row, so
    a long list stays readable.
    """
    rows: list[list[Button]] = []
    singles: list[Button] = []
    for _, group in itertools.groupby(buttons, key=_subject):
        run = list(group)
        if len(run) == 1:
            singles += run
            continue
        rows += _chunks(singles, BUTTONS_PER_ROW) + _chunks(run, TELEGRAM_ROW_LIMIT)
        singles = []
    return rows + _chunks(singles, BUTTONS_PER_ROW)


def keyboard(message: Message) -> InlineKeyboardMarkup | None:
    if not message.buttons:
        return None
    return InlineKeyboardMarkup(
        [
            [InlineKeyboardButton(button.label, callback_data=button.data) for button in row]
            for row in button_rows(message.buttons)
        ]
    )


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

    async def send_file(self, target: ChatTarget, document: Document) -> int:
        """Upload ``document`` (multipart ``sendDocument``, or ``sendPhoto`` for a photo);
        returns its message id."""
        upload = InputFile(document.data, filename=document.filename)
        try:
            if document.kind == "photo":
                sent = await self.bot.send_photo(
                    chat_id=target.chat_id,
                    message_thread_id=target.thread_id,
                    photo=upload,
                    caption=document.caption,
                    parse_mode=ParseMode.HTML,
                )
            else:
                sent = await self.bot.send_document(
                    chat_id=target.chat_id,
                    message_thread_id=target.thread_id,
                    document=upload,
                    caption=document.caption,
                    parse_mode=ParseMode.HTML,
                )
        except TelegramError as exc:
            raise _translate(exc) from exc
        return sent.message_id

    async def typing(self, target: ChatTarget) -> None:
        """Show "typing…" in the chat for a few seconds (Telegram ends it after about 5 s)."""
        try:
            await self.bot.send_chat_action(
                chat_id=target.chat_id,
                action=ChatAction.TYPING,
                message_thread_id=target.thread_id,
            )
        except TelegramError as exc:
            raise _translate(exc) from exc

    async def answer(self, query_id: str, text: str) -> None:
        """Answer a button press (its spinner stops, ``text`` pops up briefly)."""
        try:
            await self.bot.answer_callback_query(query_id, text=text)
        except TelegramError as exc:
            raise _translate(exc) from exc


async def with_retries(
    call: Callable[[], Awaitable[T]],
    *,
    attempts: int,
    max_wait: float,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> T:
    """``call()``, tried again after a 429 (its ``retry_after``), a 5xx or a network error.

    For what is worth little late and is not kept in the outbox (a button's
    answer, a 1 MB file): at most ``attempts`` tries and ``max_wait`` seconds
    of waiting, then the last error is raised. A refusal (``Undeliverable``)
    is raised at once.
    """
    waited, attempt = 0.0, 1
    while True:
        try:
            return await call()
        except (RetryLater, TransientError) as exc:
            wait = exc.seconds if isinstance(exc, RetryLater) else float(2 ** (attempt - 1))
            if attempt >= attempts or waited + wait > max_wait:
                raise
        waited, attempt = waited + wait, attempt + 1
        await sleep(wait)


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
    """Prints messages to a stream; edits are printed again, marked as updates.

    A document is not dumped on the terminal: the console runs on the server,
    so it says where the file is (``logs_dir``, the supervisor's log directory,
    where ``NAME.log`` is the file ``/logs NAME`` sends) and how much was asked for.
    A photo (a chart) is written to ``pictures_dir`` (replacing the one of the same
    name) and the console says where; without one it says only what it was.
    """

    def __init__(
        self,
        stream: TextIO | None = None,
        *,
        logs_dir: Path | None = None,
        pictures_dir: Path | None = None,
    ) -> None:
        self.stream = stream or sys.stdout
        self.logs_dir = logs_dir
        self.pictures_dir = pictures_dir
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

    async def send_file(self, target: ChatTarget, document: Document) -> int:
        self._next_id += 1
        size = f"{len(document.data):,} bytes"
        if document.kind == "photo":
            where = ""
            if self.pictures_dir is not None:
                path = await asyncio.to_thread(_write_picture, self.pictures_dir, document)
                where = f"; the picture is {path}"
            self.show(Message(f"{document.caption} (PNG, {size}){html.escape(where, quote=False)}"))
            return self._next_id
        where = f"; the file is {self.logs_dir / document.filename}" if self.logs_dir else ""
        self.show(Message(f"📎 {document.caption} ({size}){html.escape(where, quote=False)}"))
        return self._next_id


def _write_picture(directory: Path, document: Document) -> Path:
    """Write the picture whole or not at all (a reader never sees half a PNG)."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / Path(document.filename).name
    partial = path.with_name(path.name + ".part")
    partial.write_bytes(document.data)
    partial.replace(path)
    return path
