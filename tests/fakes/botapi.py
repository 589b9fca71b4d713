"""A stand-in Telegram Bot API server, so bot tests exercise real HTTP without the network.

python-telegram-bot (and any child process) talks to it through its ordinary `base_url`;
tests inject updates, inspect what was sent and make the server fail on purpose (429s,
500s, outages) to prove the notifier's retry and rate-limit handling. It runs on the stdlib
`ThreadingHTTPServer` in a daemon thread, so it serves sync and async tests alike.

Like Telegram it allows one long poll per token: a ``getUpdates`` arriving while another
still waits gets 409 Conflict (counted in ``conflicts``), so a test can prove the bot runs
exactly one poller. A poll whose client hung up (a cancelled request, a killed process)
no longer counts as waiting.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.parser import BytesParser
from email.policy import HTTP
from html.parser import HTMLParser
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self
from urllib.parse import parse_qsl, urlsplit

JSON = dict[str, Any]
MAX_TEXT_LENGTH = 4096
MAX_CAPTION_LENGTH = 1024
MAX_BUTTONS = 100
MAX_CALLBACK_DATA_BYTES = 64
CONFLICT_DESCRIPTION = (
    "Conflict: terminated by other getUpdates request; "
    "make sure that only one bot instance is running"
)
CHAT_ACTIONS = frozenset(
    {
        "typing",
        "upload_photo",
        "record_video",
        "upload_video",
        "record_voice",
        "upload_voice",
        "upload_document",
        "choose_sticker",
        "find_location",
        "record_video_note",
        "upload_video_note",
    }
)
# How often a waiting long poll checks whether its client hung up.
_HANG_UP_CHECK_SECONDS = 0.05
# Form values PTB sends verbatim; every other value arrives JSON-encoded ("123", "true", "{...}").
_STRING_FIELDS = frozenset(
    {
        "text",
        "caption",
        "parse_mode",
        "callback_query_id",
        "url",
        "inline_message_id",
        "language_code",
    }
)
_HTML_TAGS = frozenset(
    {
        "b",
        "strong",
        "i",
        "em",
        "u",
        "ins",
        "s",
        "strike",
        "del",
        "span",
        "tg-spoiler",
        "a",
        "code",
        "pre",
        "blockquote",
        "tg-emoji",
    }
)


class QuietHTTPServer(ThreadingHTTPServer):
    """A threaded server that does not print a traceback when a client hangs up mid-reply.

    That is routine here: PTB cancels its long-poll getUpdates when an Updater stops.
    """

    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class BackgroundServer:
    """An HTTP server on 127.0.0.1 (random port) served from a daemon thread.

    Subclasses say which handler serves them; use as a context manager or
    with ``start()``/``stop()``.
    """

    def __init__(self) -> None:
        self._server: QuietHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        raise NotImplementedError

    def _before_stop(self) -> None:
        """Release anything a request may be blocked on."""

    def start(self) -> Self:
        self._server = QuietHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.01,), daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._before_stop()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError(f"{type(self).__name__} is not started")
        return int(self._server.server_address[1])


class BotAPIError(Exception):
    """A Bot API error reply: HTTP status, description and optional `parameters`."""

    def __init__(self, status: int, description: str, parameters: JSON | None = None) -> None:
        super().__init__(description)
        self.status = status
        self.description = description
        self.parameters = parameters

    def body(self) -> JSON:
        reply: JSON = {"ok": False, "error_code": self.status, "description": self.description}
        if self.parameters:
            reply["parameters"] = self.parameters
        return reply


@dataclass(frozen=True)
class UploadedFile:
    """A file the bot uploaded (multipart/form-data), as the server received it."""

    filename: str | None
    data: bytes


@dataclass
class SentMessage:
    """A message the bot sent, with the history of texts it was edited to.

    ``text`` is the current text (the last edit's, if any); ``original_text`` the text it
    was sent with, and ``texts`` every version in order. For a document (``sendDocument``)
    ``text`` is its caption and ``document`` the file; for a photo (``sendPhoto``) ``text``
    is its caption and ``photo`` the uploaded image.
    """

    message_id: int
    chat_id: int
    text: str
    parse_mode: str | None = None
    reply_markup: JSON | None = None
    message_thread_id: int | None = None
    date: int = 0
    edits: list[str] = field(default_factory=list)
    document: UploadedFile | None = None
    original_text: str | None = None
    photo: UploadedFile | None = None

    def __post_init__(self) -> None:
        if self.original_text is None:
            self.original_text = self.text

    @property
    def texts(self) -> list[str]:
        """The text as sent, then each edit: every version the chat has shown."""
        return [self.text if self.original_text is None else self.original_text, *self.edits]


@dataclass
class _Failure:
    method: str | None
    status: int  # HANG_UP: close the connection without an answer
    retry_after: int | None
    remaining: int


HANG_UP = 0


class _HangUp(Exception):
    """Answer nothing and drop the connection, as a dying proxy or network would."""


class _HTMLCheck(HTMLParser):
    """Rejects what Telegram's HTML parse mode rejects: unknown or badly nested tags."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.open: list[str] = []
        self.visible = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in _HTML_TAGS:
            raise _entity_error(f"unsupported start tag {tag!r}")
        self.open.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.open or self.open[-1] != tag:
            raise _entity_error(f"unexpected end tag {tag!r}")
        self.open.pop()

    def handle_data(self, data: str) -> None:
        self.visible += len(data)


def _entity_error(detail: str) -> BotAPIError:
    return BotAPIError(400, f"Bad Request: can't parse entities: {detail}")


def _visible_length(text: str, parse_mode: str | None) -> int:
    """The length Telegram counts, after checking the markup parses (BotAPIError if not)."""
    if parse_mode is None or parse_mode.upper() != "HTML":
        return len(text)
    checker = _HTMLCheck()
    checker.feed(text)
    checker.close()
    if checker.open:
        raise _entity_error(f"unclosed start tag {checker.open[-1]!r}")
    return checker.visible


def check_text(text: str, parse_mode: str | None) -> None:
    """Raise the BotAPIError Telegram would give for an empty, unparsable or too long text."""
    visible = _visible_length(text, parse_mode)
    if not text.strip():
        raise BotAPIError(400, "Bad Request: message text is empty")
    if visible > MAX_TEXT_LENGTH:
        raise BotAPIError(400, "Bad Request: message is too long")


def check_markup(markup: JSON | None) -> None:
    """Raise what Telegram answers to too many buttons or a button's data past 64 bytes."""
    buttons = [button for row in (markup or {}).get("inline_keyboard", []) for button in row]
    if len(buttons) > MAX_BUTTONS:
        raise BotAPIError(400, "Bad Request: reply markup is too long")
    for button in buttons:
        data = button.get("callback_data")
        if data is not None and not 1 <= len(data.encode()) <= MAX_CALLBACK_DATA_BYTES:
            raise BotAPIError(400, "Bad Request: BUTTON_DATA_INVALID")


def check_caption(caption: str, parse_mode: str | None) -> None:
    """A caption may be empty, but is HTML-checked and at most 1024 visible characters."""
    if _visible_length(caption, parse_mode) > MAX_CAPTION_LENGTH:
        raise BotAPIError(400, "Bad Request: message caption is too long")


def parse_multipart(content_type: str, body: bytes) -> dict[str, Any]:
    """Form fields as strings, file fields as ``UploadedFile``: what PTB sends with a file."""
    head = f"Content-Type: {content_type}\r\n\r\n".encode()
    message = BytesParser(policy=HTTP).parsebytes(head + body)
    assert isinstance(message, EmailMessage)
    fields: dict[str, Any] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        data = part.get_payload(decode=True)
        assert isinstance(name, str), part
        assert isinstance(data, bytes), part
        filename = part.get_filename()
        fields[name] = UploadedFile(filename, data) if filename else data.decode()
    return fields


def _decode_params(raw: dict[str, Any]) -> JSON:
    """Turn PTB's JSON-encoded form values back into Python values."""
    params: JSON = dict(raw)
    for key, value in raw.items():
        if isinstance(value, str) and key not in _STRING_FIELDS:
            with contextlib.suppress(ValueError):
                params[key] = json.loads(value)
    return params


class FakeBotAPI(BackgroundServer):
    """A Telegram Bot API on 127.0.0.1 that records calls and serves injected updates."""

    def __init__(self, token: str = "123:TEST") -> None:
        super().__init__()
        self.token = token
        self.sent: list[SentMessage] = []
        self.calls: list[tuple[str, JSON]] = []
        self.answered_callbacks: list[JSON] = []
        # {"chat_id", "action", "message_thread_id" (None if not given), "time" (monotonic)}
        self.chat_actions: list[JSON] = []
        self.commands: list[JSON] | None = None
        self.conflicts = 0  # getUpdates answered 409 because another poll was waiting
        self.peak_polls = 0  # most getUpdates in flight at once, counting refused ones
        self._cond = threading.Condition()
        self._updates: list[JSON] = []
        self._next_update_id = 1
        self._next_message_id = 1
        self._failures: list[_Failure] = []
        self._ratios: dict[str | None, tuple[float, random.Random]] = {}
        self._down = False
        self._stopping = False
        # Long polls in flight: poll id -> "has its client hung up?"
        self._polls: dict[int, Callable[[], bool]] = {}
        self._next_poll_id = 1

    # -- lifecycle ---------------------------------------------------------------------------

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        return _make_handler(self)

    def start(self) -> Self:
        self._stopping = False
        return super().start()

    def _before_stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/bot"

    @property
    def base_file_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/file/bot"

    @property
    def polls_in_flight(self) -> int:
        """How many getUpdates are waiting right now (0 or 1: a second one gets 409)."""
        with self._cond:
            return len(self._polls)

    @property
    def bot_user(self) -> JSON:
        bot_id = int(self.token.split(":", 1)[0]) if self.token[:1].isdigit() else 1
        return {"id": bot_id, "is_bot": True, "first_name": "Test Bot", "username": "test_bot"}

    # -- injection ---------------------------------------------------------------------------

    def add_message(
        self,
        text: str,
        chat_id: int,
        user_id: int,
        date: int | None = None,
        *,
        thread_id: int | None = None,
        reply_to: int | None = None,
    ) -> int:
        """Queue an incoming text message (in forum topic ``thread_id`` if given).

        A leading /command gets its bot_command entity. With ``reply_to`` it is a reply to
        that message of this chat: ``reply_to_message`` is the bot's sent message as it
        reads now (text, from = the bot), or just its id, date and chat if the fake never
        sent it.
        """
        with self._cond:
            message = self._message(self._take_message_id(), chat_id, text, _user(user_id), date)
            if thread_id is not None:
                message["chat"]["is_forum"] = True
                message["chat"]["type"] = "supergroup"
                message |= {"message_thread_id": thread_id, "is_topic_message": True}
            if reply_to is not None:
                record = self._find(chat_id, reply_to)
                if record is not None:
                    replied = self._record_message(record)
                else:
                    replied = {
                        "message_id": reply_to,
                        "date": message["date"],
                        "chat": dict(message["chat"]),
                    }
                message["reply_to_message"] = replied
            if text.startswith("/"):
                command = text.split(maxsplit=1)[0]
                message["entities"] = [{"type": "bot_command", "offset": 0, "length": len(command)}]
            return self._push_update({"message": message})

    def add_callback(self, data: str, chat_id: int, user_id: int, message_id: int) -> int:
        """Queue a press of an inline button with `data` on message `message_id`."""
        with self._cond:
            record = self._find(chat_id, message_id)
            message = self._message(
                message_id,
                chat_id,
                record.text if record else "",
                self.bot_user,
                record.date if record else None,
            )
            if record is not None and record.reply_markup is not None:
                message["reply_markup"] = record.reply_markup
            query = {
                "id": str(self._next_update_id),
                "from": _user(user_id),
                "chat_instance": str(chat_id),
                "data": data,
                "message": message,
            }
            return self._push_update({"callback_query": query})

    def fail_next(
        self, method: str | None, status: int, retry_after: int | None = None, count: int = 1
    ) -> None:
        """Make the next `count` calls of `method` (any method if None) fail with `status`."""
        with self._cond:
            self._failures.append(_Failure(method, status, retry_after, count))

    def hang_up_next(self, method: str | None, count: int = 1) -> None:
        """Make the next `count` calls of `method` get no answer: the connection just closes."""
        self.fail_next(method, HANG_UP, count=count)

    def clear_failures(self) -> None:
        """Forget failures still pending from `fail_next` and `hang_up_next`."""
        with self._cond:
            self._failures.clear()

    def fail_ratio(self, method: str | None, ratio: float, seed: int = 0) -> None:
        """Make a deterministic `ratio` of calls of `method` fail with 500 (0 turns it off)."""
        with self._cond:
            if ratio <= 0:
                self._ratios.pop(method, None)
            else:
                self._ratios[method] = (ratio, random.Random(seed))

    def set_down(self, down: bool = True) -> None:
        """While down every request gets 502 Bad Gateway, like Telegram behind a dead proxy."""
        with self._cond:
            self._down = down

    # -- waiting -----------------------------------------------------------------------------

    def sent_matching(
        self, predicate: Callable[[SentMessage], bool] | None = None
    ) -> list[SentMessage]:
        with self._cond:
            return [m for m in self.sent if predicate is None or predicate(m)]

    async def wait_for_sent(
        self,
        predicate: Callable[[SentMessage], bool] | None = None,
        count: int = 1,
        timeout: float = 20.0,  # noqa: ASYNC109 - a deadline for polling
    ) -> list[SentMessage]:
        """Poll until at least `count` sent messages match `predicate`; return the matches."""
        deadline = time.monotonic() + timeout
        while len(found := self.sent_matching(predicate)) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(self._timeout_message(count, found))
            await asyncio.sleep(0.01)
        return found

    def wait_for_sent_sync(
        self,
        predicate: Callable[[SentMessage], bool] | None = None,
        count: int = 1,
        timeout: float = 20.0,
    ) -> list[SentMessage]:
        """Blocking twin of `wait_for_sent`, for sync tests and threads."""
        deadline = time.monotonic() + timeout
        while len(found := self.sent_matching(predicate)) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(self._timeout_message(count, found))
            time.sleep(0.01)
        return found

    def _timeout_message(self, count: int, found: list[SentMessage]) -> str:
        texts = [m.text for m in self.sent_matching()]
        return f"wanted {count} matching sent messages, got {len(found)}; all sent: {texts!r}"

    def edited_matching(self, predicate: Callable[[list[str]], bool]) -> list[SentMessage]:
        """Sent messages edited at least once whose ``edits`` (oldest first) satisfy `predicate`."""
        return self.sent_matching(lambda m: bool(m.edits) and predicate(list(m.edits)))

    async def wait_for_edit(
        self,
        predicate: Callable[[list[str]], bool],
        within: float = 5.0,
    ) -> list[SentMessage]:
        """Poll until some sent message's ``edits`` satisfy `predicate`; return the matches.

        For progress messages: ``await fake.wait_for_edit(lambda edits: "done" in edits[-1])``.
        Fails with TimeoutError after `within` seconds.
        """
        deadline = time.monotonic() + within
        while not (found := self.edited_matching(predicate)):
            if time.monotonic() > deadline:
                raise TimeoutError(self._edit_timeout_message())
            await asyncio.sleep(0.01)
        return found

    def wait_for_edit_sync(
        self,
        predicate: Callable[[list[str]], bool],
        within: float = 5.0,
    ) -> list[SentMessage]:
        """Blocking twin of `wait_for_edit`, for sync tests and threads."""
        deadline = time.monotonic() + within
        while not (found := self.edited_matching(predicate)):
            if time.monotonic() > deadline:
                raise TimeoutError(self._edit_timeout_message())
            time.sleep(0.01)
        return found

    def _edit_timeout_message(self) -> str:
        texts = [m.texts for m in self.sent_matching()]
        return f"no sent message's edits matched; every message's versions: {texts!r}"

    # -- request handling (called from server threads) ---------------------------------------

    def handle(
        self, path: str, raw: dict[str, Any], client_gone: Callable[[], bool] | None = None
    ) -> tuple[int, JSON]:
        """Answer one request for `path`; returns HTTP status and JSON body.

        `client_gone` tells whether the client has hung up; a long poll stops waiting (and
        stops blocking the next one) when it has. Raises ``_HangUp`` when the request is to
        get no answer at all.
        """
        try:
            result = self._dispatch(path, _decode_params(raw), client_gone or _never)
            return 200, {"ok": True, "result": result}
        except BotAPIError as error:
            return error.status, error.body()

    def _dispatch(self, path: str, params: JSON, client_gone: Callable[[], bool]) -> Any:
        with self._cond:
            if self._down:
                raise BotAPIError(502, "Bad Gateway")
        prefix, _, method = path.rpartition("/")
        if not prefix.startswith("/bot"):
            raise BotAPIError(404, "Not Found")
        if prefix != f"/bot{self.token}":
            raise BotAPIError(401, "Unauthorized")
        with self._cond:
            self.calls.append((method, params))
            self._maybe_fail(method)
        name = method.lower()
        if name == "getupdates":
            return self._get_updates(params, client_gone)
        handler = self._handlers().get(name)
        if handler is None:
            raise BotAPIError(404, "Not Found: method not found")
        with self._cond:
            return handler(params)

    def _handlers(self) -> dict[str, Callable[[JSON], Any]]:
        return {
            "getme": lambda _: self.bot_user,
            "deletewebhook": lambda _: True,
            "close": lambda _: True,
            "logout": lambda _: True,
            "sendmessage": self._send_message,
            "senddocument": self._send_document,
            "sendphoto": self._send_photo,
            "editmessagetext": self._edit_message_text,
            "answercallbackquery": self._answer_callback,
            "sendchataction": self._send_chat_action,
            "setmycommands": self._set_commands,
            "getmycommands": lambda _: self.commands or [],
            "deletemycommands": self._delete_commands,
        }

    def _maybe_fail(self, method: str) -> None:
        for failure in self._failures:
            if failure.method in (None, method):
                failure.remaining -= 1
                if failure.remaining <= 0:
                    self._failures.remove(failure)
                raise _failure_error(failure.status, failure.retry_after)
        for key in (method, None):
            if key in self._ratios:
                ratio, rng = self._ratios[key]
                if rng.random() < ratio:
                    raise BotAPIError(500, "Internal Server Error")

    def _get_updates(self, params: JSON, client_gone: Callable[[], bool]) -> list[JSON]:
        """Long-poll for updates; 409 if another poll is still waiting, as Telegram answers."""
        offset = int(params.get("offset", 0))
        limit = int(params.get("limit", 100))
        deadline = time.monotonic() + float(params.get("timeout", 0))
        with self._cond:
            for poll, gone in list(self._polls.items()):
                if gone():  # its client left; its thread just has not noticed yet
                    del self._polls[poll]
            self.peak_polls = max(self.peak_polls, len(self._polls) + 1)
            if self._polls:
                self.conflicts += 1
                raise BotAPIError(409, CONFLICT_DESCRIPTION)
            poll = self._next_poll_id
            self._next_poll_id += 1
            self._polls[poll] = client_gone
            try:
                if offset:
                    self._updates = [u for u in self._updates if u["update_id"] >= offset]
                while not (self._updates or self._stopping) and poll in self._polls:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0 or client_gone():
                        break
                    self._cond.wait(min(remaining, _HANG_UP_CHECK_SECONDS))
                return list(self._updates[:limit])
            finally:
                self._polls.pop(poll, None)

    def _send_message(self, params: JSON) -> JSON:
        text, parse_mode = str(params.get("text", "")), params.get("parse_mode")
        check_text(text, parse_mode)
        check_markup(params.get("reply_markup"))
        chat_id = int(params["chat_id"])
        thread_id = params.get("message_thread_id")
        record = SentMessage(
            message_id=self._take_message_id(),
            chat_id=chat_id,
            text=text,
            parse_mode=parse_mode,
            reply_markup=params.get("reply_markup"),
            message_thread_id=int(thread_id) if thread_id is not None else None,
            date=int(time.time()),
        )
        self.sent.append(record)
        return self._record_message(record)

    def _edit_message_text(self, params: JSON) -> JSON:
        record = self._find(int(params.get("chat_id", 0)), int(params.get("message_id", 0)))
        if record is None:
            raise BotAPIError(400, "Bad Request: message to edit not found")
        text, markup = str(params.get("text", "")), params.get("reply_markup")
        check_text(text, params.get("parse_mode"))
        check_markup(markup)
        if text == record.text and markup == record.reply_markup:
            raise BotAPIError(
                400,
                "Bad Request: message is not modified: specified new message "
                "content and reply markup are exactly the same as a current content "
                "and reply markup of the message",
            )
        record.text, record.reply_markup = text, markup
        record.parse_mode = params.get("parse_mode")
        record.edits.append(text)
        return {**self._record_message(record), "edit_date": int(time.time())}

    def _send_document(self, params: JSON) -> JSON:
        """Only an upload is understood (no file_id or URL): that is all the bot sends."""
        document = params.get("document")
        if not isinstance(document, UploadedFile):
            raise BotAPIError(400, "Bad Request: invalid file HTTP URL specified")
        if not document.data:
            raise BotAPIError(400, "Bad Request: file must be non-empty")
        caption, parse_mode = str(params.get("caption", "")), params.get("parse_mode")
        check_caption(caption, parse_mode)
        thread_id = params.get("message_thread_id")
        record = SentMessage(
            message_id=self._take_message_id(),
            chat_id=int(params["chat_id"]),
            text=caption,
            parse_mode=parse_mode,
            reply_markup=params.get("reply_markup"),
            message_thread_id=int(thread_id) if thread_id is not None else None,
            date=int(time.time()),
            document=document,
        )
        self.sent.append(record)
        return self._record_message(record)

    def _send_photo(self, params: JSON) -> JSON:
        """Only an uploaded PNG or JPEG is understood, checked against Telegram's limits for a
        photo: at most 10 MB, width + height at most 10000, sides at most 20 to 1."""
        photo = params.get("photo")
        if not isinstance(photo, UploadedFile):
            raise BotAPIError(400, "Bad Request: invalid file HTTP URL specified")
        if not photo.data:
            raise BotAPIError(400, "Bad Request: file must be non-empty")
        size = image_size(photo.data)
        if size is None:
            raise BotAPIError(400, "Bad Request: IMAGE_PROCESS_FAILED")
        width, height = size
        too_big = len(photo.data) > 10 * 1024 * 1024 or width + height > 10_000
        if too_big or max(width, height) > 20 * min(width, height):
            raise BotAPIError(400, "Bad Request: PHOTO_INVALID_DIMENSIONS")
        caption, parse_mode = str(params.get("caption", "")), params.get("parse_mode")
        check_caption(caption, parse_mode)
        thread_id = params.get("message_thread_id")
        record = SentMessage(
            message_id=self._take_message_id(),
            chat_id=int(params["chat_id"]),
            text=caption,
            parse_mode=parse_mode,
            reply_markup=params.get("reply_markup"),
            message_thread_id=int(thread_id) if thread_id is not None else None,
            date=int(time.time()),
            photo=photo,
        )
        self.sent.append(record)
        return self._record_message(record)

    def _send_chat_action(self, params: JSON) -> bool:
        action = params.get("action")
        if action not in CHAT_ACTIONS:
            raise BotAPIError(400, "Bad Request: wrong parameter action in request")
        thread_id = params.get("message_thread_id")
        self.chat_actions.append(
            {
                "chat_id": int(params["chat_id"]),
                "action": action,
                "message_thread_id": int(thread_id) if thread_id is not None else None,
                "time": time.monotonic(),
            }
        )
        return True

    def _answer_callback(self, params: JSON) -> bool:
        self.answered_callbacks.append(params)
        return True

    def _set_commands(self, params: JSON) -> bool:
        self.commands = list(params.get("commands", []))
        return True

    def _delete_commands(self, _: JSON) -> bool:
        self.commands = []
        return True

    # -- helpers (caller holds the lock) -----------------------------------------------------

    def _take_message_id(self) -> int:
        self._next_message_id += 1
        return self._next_message_id - 1

    def _push_update(self, body: JSON) -> int:
        update_id = self._next_update_id
        self._next_update_id += 1
        self._updates.append({"update_id": update_id, **body})
        self._cond.notify_all()
        return update_id

    def _find(self, chat_id: int, message_id: int) -> SentMessage | None:
        for record in self.sent:
            if record.chat_id == chat_id and record.message_id == message_id:
                return record
        return None

    def _message(
        self, message_id: int, chat_id: int, text: str, sender: JSON, date: int | None
    ) -> JSON:
        chat: JSON = {"id": chat_id, "type": "private" if chat_id > 0 else "group"}
        chat["first_name" if chat_id > 0 else "title"] = f"Chat {chat_id}"
        return {
            "message_id": message_id,
            "date": int(time.time()) if date is None else date,
            "chat": chat,
            "from": sender,
            "text": text,
        }

    def _record_message(self, record: SentMessage) -> JSON:
        message = self._message(
            record.message_id, record.chat_id, record.text, self.bot_user, record.date
        )
        if record.reply_markup is not None:
            message["reply_markup"] = record.reply_markup
        if record.message_thread_id is not None:
            message["message_thread_id"] = record.message_thread_id
        if record.document is not None:
            del message["text"]
            message["caption"] = record.text
            message["document"] = {
                "file_id": f"file-{record.message_id}",
                "file_unique_id": f"unique-{record.message_id}",
                "file_name": record.document.filename,
                "file_size": len(record.document.data),
            }
        if record.photo is not None:
            width, height = image_size(record.photo.data) or (0, 0)
            del message["text"]
            message["caption"] = record.text
            message["photo"] = [
                {
                    "file_id": f"photo-{record.message_id}",
                    "file_unique_id": f"unique-{record.message_id}",
                    "width": width,
                    "height": height,
                    "file_size": len(record.photo.data),
                }
            ]
        return message


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def image_size(data: bytes) -> tuple[int, int] | None:
    """Width and height of a PNG (from its IHDR chunk) or a JPEG (its SOF marker); None when
    it is neither, as Telegram refuses what it cannot read as an image."""
    if data.startswith(PNG_SIGNATURE) and data[12:16] == b"IHDR":
        return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    if data.startswith(b"\xff\xd8"):
        at = 2
        while at + 9 <= len(data) and data[at] == 0xFF:
            marker, length = data[at + 1], int.from_bytes(data[at + 2 : at + 4], "big")
            if marker in (0xC0, 0xC1, 0xC2):
                height = int.from_bytes(data[at + 5 : at + 7], "big")
                return int.from_bytes(data[at + 7 : at + 9], "big"), height
            at += 2 + length
    return None


def _user(user_id: int) -> JSON:
    return {"id": user_id, "is_bot": False, "first_name": f"User {user_id}"}


def _never() -> bool:
    return False


def _peer_closed(connection: socket.socket) -> bool:
    """Whether the client closed its end: the socket reads EOF (or is broken). Never blocks."""
    try:
        return connection.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except (BlockingIOError, InterruptedError):
        return False  # nothing to read yet: still connected
    except OSError:
        return True


def _failure_error(status: int, retry_after: int | None) -> Exception:
    if status == HANG_UP:
        return _HangUp()
    if status == 429:
        seconds = 1 if retry_after is None else retry_after
        return BotAPIError(
            429, f"Too Many Requests: retry after {seconds}", {"retry_after": seconds}
        )
    return BotAPIError(status, HTTPStatus(status).phrase)


def _make_handler(fake: FakeBotAPI) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            url = urlsplit(self.path)
            self._reply(url.path, dict(parse_qsl(url.query)))

        def do_POST(self) -> None:
            url = urlsplit(self.path)
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            kind = self.headers.get_content_type()
            raw: dict[str, Any] = dict(parse_qsl(url.query))
            if kind == "application/json":
                raw = json.loads(body or b"{}")
            elif kind == "multipart/form-data":
                raw |= parse_multipart(self.headers["Content-Type"], body)
            else:
                raw |= dict(parse_qsl(body.decode(), keep_blank_values=True))
            self._reply(url.path, raw)

        def _reply(self, path: str, raw: dict[str, Any]) -> None:
            try:
                status, body = fake.handle(path, raw, lambda: _peer_closed(self.connection))
            except _HangUp:
                self.close_connection = True
                return
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            """Keep test output quiet."""

    return Handler
