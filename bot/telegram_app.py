"""Telegram mode: python-telegram-bot's Application around the shared service.

The lifecycle is driven by hand rather than ``run_polling`` so that an
unreachable API or a bad token at start is a clear line and a retry with
backoff, not a traceback, and so the workflows are stopped before the bot
says goodbye.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Awaitable, Coroutine
from datetime import UTC, datetime
from typing import Any

from telegram import BotCommand, Update
from telegram import Message as TelegramMessage
from telegram.error import InvalidToken, TelegramError
from telegram.ext import (
    Application,
    ApplicationBuilder,
    ApplicationHandlerStop,
    CallbackQueryHandler,
    ContextTypes,
    MessageHandler,
    TypeHandler,
    filters,
)
from telegram.request import HTTPXRequest

from bot.agent.chat import ChatPlace, session_of_key
from bot.agent.views import TelegramView
from bot.audit import Actor
from bot.commands import COMMANDS, Reply, addressee, command_name, mutates
from bot.handling import FleetUpdates
from bot.healthcheck import Pinger
from bot.observe.pictures import attach
from bot.outbox import Pacing
from bot.service import Service
from bot.settings import BotSettings
from bot.systemd import SystemdNotifier
from bot.text import Message, esc
from bot.transport import (
    ChatTarget,
    Document,
    RetryLater,
    TelegramTransport,
    TransientError,
    Undeliverable,
    with_retries,
)
from supervisor.agent.types import Session
from supervisor.api import HostSupervisor
from supervisor.fleet import requests
from supervisor.fleet.node import FleetNode

log = logging.getLogger("bot")
OFFLINE_AFTER_SECONDS = 60.0
API_RETRY_MAX_SECONDS = 300.0
ANSWER_MAX_WAIT_SECONDS = 5.0  # a button's answer is worth little after a few seconds
ANSWER_ATTEMPTS = 3
# A file or photo is not kept in the outbox: a few tries, then a line saying so.
DOCUMENT_ATTEMPTS = 5
DOCUMENT_MAX_WAIT_SECONDS = 60.0
APOLOGY = Message("Sorry, that failed; the error is logged.")
BRIDGE_COMMANDS = frozenset({"ask", "new", "sessions", "approve"})
BRIDGE_BUTTONS = frozenset({"agentstop", "approve", "askpick"})

App = Application[Any, Any, Any, Any, Any, Any]


async def _first(*events: asyncio.Event, seconds: float | None = None) -> bool:
    """Wait until one of ``events`` is set (or ``seconds`` pass); whether the first one is."""
    waits = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for wait in waits:
            wait.cancel()
    return events[0].is_set()


def file_url(base_url: str) -> str:
    """``https://api.telegram.org/bot`` -> ``https://api.telegram.org/file/bot``."""
    head, _, tail = base_url.rpartition("/")
    return f"{head}/file/{tail}"


async def wait_for_api(app: App, stop: asyncio.Event, base_url: str) -> bool:
    """Initialize (getMe) until it works, backing off; False if asked to stop meanwhile."""
    delay = 1.0
    while not stop.is_set():
        try:
            await app.initialize()  # calls getMe
            return True
        except InvalidToken:
            problem = "the token was rejected (check TELEGRAM_BOT_TOKEN)"
        except TelegramError as exc:
            problem = f"{type(exc).__name__}: {exc}"
        log.error(
            "cannot use the Telegram API at %s: %s; retrying in %.0fs", base_url, problem, delay
        )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), delay)
        delay = min(delay * 2, API_RETRY_MAX_SECONDS)
    return False


class TelegramBot:
    """Commands and buttons in, alerts out, for the allowed chats only."""

    def __init__(
        self, settings: BotSettings, supervisor: HostSupervisor, systemd: SystemdNotifier
    ) -> None:
        token = settings.token
        assert token, "checked by the caller"
        self.settings = settings
        self.systemd = systemd
        poll = settings.telegram_poll_timeout_seconds
        self.updates = FleetUpdates(lambda: self.service.node)
        self.app: App = (
            ApplicationBuilder()
            .token(token)
            .base_url(settings.telegram_api_base_url)
            .base_file_url(file_url(settings.telegram_api_base_url))
            .request(HTTPXRequest(connection_pool_size=8, read_timeout=20.0))
            .get_updates_request(HTTPXRequest(read_timeout=poll + 10.0))
            .concurrent_updates(self.updates)
            .build()
        )
        assert settings.telegram_chat_id is not None, "checked by the caller"
        target = ChatTarget(settings.telegram_chat_id, settings.telegram_message_thread_id)
        pacing = Pacing(
            per_chat_seconds=settings.telegram_pace_seconds,
            per_group_seconds=settings.telegram_group_pace_seconds,
            gather_seconds=min(settings.telegram_pace_seconds, 1.0),
        )
        self.transport = TelegramTransport(self.app.bot)
        self.service = Service(
            supervisor,
            self.transport,
            target,
            pacing=pacing,
            pinger=Pinger.configured(settings),
            alerting=settings.alerting,
            bridge_view=lambda notifier: TelegramView(notifier, self.transport),
            poller=True,
            metrics_addr=settings.metrics_addr,
        )
        # /chart, the 📈 button and the digest's chart; heartbeat ages sampled for them.
        self.heartbeats = attach(self.service, lambda picture: self._upload(target, picture))
        self._denied: set[int] = set()
        self._followers: set[asyncio.Task[None]] = set()  # follows and uploads, cancelled at stop
        self.app.add_handler(TypeHandler(Update, self._gate), group=-1)
        self.app.add_handler(MessageHandler(filters.COMMAND, self._on_command))
        self.app.add_handler(MessageHandler(filters.TEXT & ~filters.COMMAND, self._on_text))
        self.app.add_handler(CallbackQueryHandler(self._on_button))
        self.app.add_error_handler(self._on_error)

    # -- lifecycle -------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Serve until ``stop`` is set; the workflows are stopped before this returns.

        The workflows start first and keep running while Telegram is
        unreachable (alerts wait in the outbox), so an outage at boot never
        keeps them down, and systemd hears READY as soon as they run.
        """
        node = self.service.node
        host = esc(socket.gethostname() if node is None else f"node {node.name}")
        names = esc(", ".join(self.service.supervisor.names))
        # In a fleet, delivery waits for this node to be elected the poller (_serve_fleet).
        await self.service.start(hello=f"🟢 bot up on {host}: {names}", deliver=node is None)
        self.heartbeats.start()
        self.systemd.ready()
        watchdog = asyncio.create_task(self._watchdog())
        connected = False
        try:
            connected = await wait_for_api(self.app, stop, self.settings.telegram_api_base_url)
            if connected:
                await self._serve(stop)
        finally:
            self.systemd.stopping()
            watchdog.cancel()
            await self.heartbeats.stop()
            # Before the app's shutdown closes the HTTP client the goodbye goes out through.
            await self.service.stop(
                goodbye=f"🔴 bot on {host} going down; workflows stopped, "
                "they resume on the next start"
            )
            if connected:
                await self.app.shutdown()

    async def _serve(self, stop: asyncio.Event) -> None:
        """Commands in: the menu, then long polling until ``stop``."""
        try:
            await self.app.start()
            if self.service.node is not None:
                await self._serve_fleet(stop, self.service.node)
                return
            await self._register_commands()
            if await self._start_polling(stop):
                log.info("bot running; commanding chats: %s", sorted(self.settings.allowed_chats))
                await stop.wait()
        finally:
            await self._stop_telegram()

    async def _serve_fleet(self, stop: asyncio.Event, node: FleetNode) -> None:
        """Poll Telegram and deliver the outbox only while this node holds the poller's lease.

        Losing the lease stops polling at once (before another node may take
        it over: ``supervisor.fleet.lease``); ``stop`` leaves delivery
        running, for the goodbye ``Service.stop`` flushes.
        """
        while not stop.is_set():
            if not await _first(node.leading, stop):
                return
            await self.service.lead(True)
            if await self._start_polling(stop, node.following):
                await self.updates.replay(self.app, node)
                await self._register_commands()
                log.info("polling Telegram for the fleet as node %s", node.name)
                await _first(node.following, stop)
            if stop.is_set():
                return
            await self._stop_polling()
            await self.service.lead(False)

    async def _start_polling(self, stop: asyncio.Event, lost: asyncio.Event | None = None) -> bool:
        """Start long polling, retrying while the API is unreachable; False if ``stop`` (or
        ``lost``, the fleet's lease) came first."""
        assert self.app.updater is not None
        delay = 1.0
        while not stop.is_set() and not (lost is not None and lost.is_set()):
            try:
                await self.app.updater.start_polling(
                    timeout=self.settings.telegram_poll_timeout_seconds,
                    allowed_updates=[Update.MESSAGE, Update.CALLBACK_QUERY],
                )
                return True
            except TelegramError as exc:
                log.error(
                    "cannot start polling (%s: %s); retrying in %.0fs",
                    type(exc).__name__,
                    exc,
                    delay,
                )
            await _first(stop, *([lost] if lost is not None else []), seconds=delay)
            delay = min(delay * 2, API_RETRY_MAX_SECONDS)
        return False

    async def _stop_polling(self) -> None:
        """Stop long polling (PTB confirms the updates it took); the API may be unreachable."""
        updater = self.app.updater
        try:
            if updater is not None and updater.running:
                await updater.stop()
        except TelegramError as exc:
            log.warning("stopping the updater: %s", exc)

    async def _stop_telegram(self) -> None:
        """Stop follows, polling and handlers; an unreachable API must not block shutdown."""
        for follower in self._followers:  # PTB's stop() would wait out every follow
            follower.cancel()
        await self._stop_polling()
        if self.app.running:
            await self.app.stop()

    async def _register_commands(self) -> None:
        try:
            await self.app.bot.set_my_commands(
                [BotCommand(name, text) for name, text in COMMANDS.items()]
            )
        except TelegramError as exc:
            log.warning("could not register the command menu: %s", exc)

    async def _watchdog(self) -> None:
        """Ping systemd from the event loop itself, so a stuck loop gets the bot restarted."""
        interval = self.systemd.watchdog_interval()
        if interval is None:
            return
        while True:
            self.systemd.watchdog()
            await asyncio.sleep(interval)

    # -- handlers --------------------------------------------------------------

    def allowed(self, chat_id: int | None, user_id: int | None) -> bool:
        if chat_id is None or chat_id not in self.settings.allowed_chats:
            return False
        users = self.settings.telegram_allowed_user_ids
        return not users or (user_id is not None and user_id in users)

    async def _gate(self, update: Update, _context: ContextTypes.DEFAULT_TYPE) -> None:
        chat, user = update.effective_chat, update.effective_user
        chat_id, user_id = (chat.id if chat else None), (user.id if user else None)
        if self.allowed(chat_id, user_id):
            node, request = self.service.node, requests.current.get()
            if (
                node is not None
                and request is not None
                and not await node.take(request, update.to_json())
            ):
                # A new poller may be served an update its predecessor took but had not
                # confirmed to Telegram: it is handled, once, already (bot.handling).
                log.info("update %d was handled by another node; skipping", update.update_id)
                raise ApplicationHandlerStop
            return
        key = chat_id if chat_id is not None else 0
        if key not in self._denied:
            self._denied.add(key)
            log.warning(
                "ignoring chat %s (user %s): not allowed; add it to TELEGRAM_ALLOWED_CHAT_IDS "
                "(or the user to TELEGRAM_ALLOWED_USER_IDS) to let it command the bot",
                chat_id,
                user_id,
            )
        raise ApplicationHandlerStop

    @staticmethod
    def actor(update: Update) -> Actor:
        chat, user = update.effective_chat, update.effective_user
        name = (user.username or user.full_name) if user else "unknown"
        return Actor(chat.id if chat else None, user.id if user else None, name)

    def for_another_bot(self, word: str) -> bool:
        """``/status@other_bot`` in a group is that bot's: not ours to answer or execute."""
        bot = addressee(word)
        return bot is not None and bot.lower() != (self.app.bot.username or "").lower()

    async def _on_command(self, update: Update, _context: ContextTypes.DEFAULT_TYPE) -> None:
        message = update.effective_message
        if message is None or not message.text:
            return
        word, *args = message.text.split()
        if self.for_another_bot(word):
            return
        command = command_name(word)
        actor = self.actor(update)
        if command in BRIDGE_COMMANDS:
            await self._bridge_command(update, command, args)
            return
        request = requests.current.get()  # a replay: as old as when it first came
        received = datetime.now(UTC) if request is None else request.received_at
        age = (received - message.date).total_seconds()
        if mutates(command, args) and age > OFFLINE_AFTER_SECONDS:
            reply = await self.service.router.ignore_offline(command, args, actor, age)
        else:
            reply = await self.service.router.handle(command, args, actor)
        await self._send(update, reply)

    async def _on_text(self, update: Update, _context: ContextTypes.DEFAULT_TYPE) -> None:
        """Plain words from an allowed user: a message to the agent bridge."""
        message = update.effective_message
        if message is None or not message.text:
            return
        await self._ask(update, message.text)

    async def _ask(self, update: Update, text: str, workflow: str | None = None) -> None:
        """Start or continue a bridge session, in the background: a turn takes a while."""
        message, target = update.effective_message, self._origin(update)
        if message is None or target is None:
            return
        replied, replied_workflow = await self._replied(target, message.reply_to_message)
        # A forum topic is a chat of its own; a reply thread in a plain group is not.
        place = ChatPlace(target.chat_id, target.thread_id if message.is_topic_message else None)
        ask = self.service.chat.ask(
            self.actor(update),
            place,
            text,
            workflow=workflow,
            replied=replied,
            replied_workflow=replied_workflow,
        )
        self._background(ask)

    async def _replied(
        self, target: ChatTarget, replied: TelegramMessage | None
    ) -> tuple[Session | None, str | None]:
        """The session of the answer, or the workflow of the alert, a message replies to."""
        if replied is None:
            return None, None
        origin = await self.service.notifier.origin(target, replied.message_id)
        if origin is None:
            return None, None
        session_id = session_of_key(origin.key)
        if session_id is not None:
            session = await asyncio.to_thread(self.service.chat.bridge.store.get, session_id)
            if session is not None:
                return session, None
        return None, origin.workflow

    async def _bridge_command(self, update: Update, command: str, args: list[str]) -> None:
        """``/ask [NAME] text``, ``/new``, ``/sessions``, ``/approve ID CHOICE``."""
        target = self._origin(update)
        if target is None:
            return
        place = ChatPlace(target.chat_id, target.thread_id)
        chat = self.service.chat
        if command == "ask":
            named = args[0] if args and args[0] in self.service.api.names else None
            await self._ask(update, " ".join(args[1:] if named else args), named)
            return
        if command == "approve" and len(args) == 2:
            said = await chat.decide(self.actor(update), args[0], args[1])
            reply = Message(esc(said))
        elif command == "approve":
            reply = Message("usage: /approve ID once|session|deny")
        elif command == "new":
            reply = await chat.new(place)
        else:
            reply = await chat.sessions(place)
        await self.service.notifier.reply(target, [reply])

    async def _bridge_button(self, update: Update, action: str, args: list[str]) -> str:
        """Stop, an approval's choice, a workflow picked for a question; the pop-up text."""
        chat = self.service.chat
        if action == "agentstop" and args:
            return "stopping" if chat.stop(args[0]) else "nothing is running"
        if action == "approve" and len(args) == 2:
            return await chat.decide(self.actor(update), args[0], args[1])
        if action == "askpick" and len(args) == 2:
            self._background(chat.pick(self.actor(update), args[0], args[1]))
            return f"asking about {args[1]}"
        return "unknown button"

    async def _on_button(self, update: Update, _context: ContextTypes.DEFAULT_TYPE) -> None:
        query = update.callback_query
        if query is None or not query.data:
            return
        action, *args = query.data.split(":")  # "restart:api", "mute:api:1h", "help"
        if action in BRIDGE_BUTTONS:
            said = await self._bridge_button(update, action, args)
            self.app.create_task(self._answer(query.id, said))
            return
        # In the background: the reply must not wait for the spinner to stop.
        self.app.create_task(self._answer(query.id, " ".join([action, *args])))
        reply = await self.service.router.handle(action, args, self.actor(update))
        await self._send(update, reply)

    async def _answer(self, query_id: str, text: str) -> None:
        """Best effort: retried for a few seconds, then only logged."""
        try:
            await with_retries(
                lambda: self.transport.answer(query_id, text),
                attempts=ANSWER_ATTEMPTS,
                max_wait=ANSWER_MAX_WAIT_SECONDS,
            )
        except (Undeliverable, RetryLater, TransientError) as exc:
            log.warning("could not answer a button press: %s", exc)

    @staticmethod
    def _origin(update: Update) -> ChatTarget | None:
        """The chat, and forum thread, an update came from: where its reply goes."""
        chat, message = update.effective_chat, update.effective_message
        if chat is None:
            return None
        return ChatTarget(chat.id, message.message_thread_id if message else None)

    async def _send(self, update: Update, reply: Reply) -> None:
        """Commit the reply to the outbox, which delivers it whatever Telegram does (bot.outbox).

        A document or a photo is the exception: a megabyte has no place in the outbox
        table, so it is uploaded directly, in the background (``_upload``).
        """
        target = self._origin(update)
        if target is None:
            return
        if reply.messages:
            await self.service.notifier.reply(target, reply.messages, reply.key)
        if reply.updates is not None:
            self._background(self._follow(target, reply))
        if reply.later is not None:
            later = self._background(self._answer_later(target, reply.later, reply.key))
            request = requests.current.get()
            if request is not None:  # the update is handled once this is in the outbox too
                request.later.append(later)
        if reply.document is not None:
            self._background(self._upload(target, reply.document))

    def _background(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """Run ``work`` beside the handlers; stopping the bot cancels it (``_stop_telegram``)."""
        task = asyncio.create_task(work)
        self._followers.add(task)
        task.add_done_callback(self._followers.discard)
        return task

    async def _follow(self, target: ChatTarget, reply: Reply) -> None:
        """Each update is a reply with the follow's key: it edits the first message, paced
        with everything else, and an update still waiting is replaced by the next one."""
        assert reply.updates is not None
        try:
            async for update in reply.updates:
                await self.service.notifier.reply(target, [update.message], reply.key)
        except Exception:
            log.exception("tail follow failed")

    async def _answer_later(
        self, target: ChatTarget, later: Awaitable[Message], key: str | None
    ) -> None:
        """The slow part of a reply (``/why``): it edits the first message when it comes."""
        await self.service.notifier.reply(target, [await later], key)

    async def _upload(self, target: ChatTarget, document: Document) -> None:
        """Send the file or photo, retried a few times; if it cannot go, a line through the
        outbox says so (and where to look instead).

        Not exactly once: an upload that timed out after Telegram took it is sent again.
        """
        try:
            await with_retries(
                lambda: self.transport.send_file(target, document),
                attempts=DOCUMENT_ATTEMPTS,
                max_wait=DOCUMENT_MAX_WAIT_SECONDS,
            )
        except (Undeliverable, RetryLater, TransientError) as exc:
            log.warning("could not send %s: %s", document.filename, exc)
            failed = f"Could not send {esc(document.filename)} ({esc(exc)}); {document.unsent}."
            await self.service.notifier.reply(target, [Message(failed)])

    async def _on_error(self, update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
        log.error("handler failed for %r", update, exc_info=context.error)
        target = self._origin(update) if isinstance(update, Update) else None
        if target is not None:
            await self.service.notifier.reply(target, [APOLOGY])
