"""The command layer: one implementation of every chat command, for every transport.

A command is a name and its arguments; the answer is a list of messages
(long answers are split), plus, for ``/tail NAME follow``, a stream of
updates the transport shows by editing one message. Bad arguments and
unknown workflows get one line saying what would work.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

from bot.audit import Actor, AuditLog
from bot.render import HELP, detail, names_message, overview, tail_message
from bot.text import Message, esc, esc_clip, format_duration, parse_duration
from supervisor.api import SupervisorAPI, SupervisorError, UnknownWorkflow

log = logging.getLogger("bot")

TAIL_DEFAULT = 30
TAIL_MAX = 200
DEFAULT_MUTE = "1h"
MUTATING = frozenset({"start", "stop", "restart", "pause", "resume", "mute", "unmute"})
COMMANDS: dict[str, str] = {
    "status": "every workflow at a glance, or one in detail",
    "workflows": "the configured workflows",
    "start": "start a workflow",
    "stop": "stop a workflow",
    "restart": "restart a workflow",
    "pause": "stop a workflow and keep it stopped",
    "resume": "resume a paused workflow",
    "tail": "the last log lines of a workflow",
    "mute": "hold alerts for a while (default 1h)",
    "unmute": "end the mute",
    "help": "what the bot can do",
}


class Muter(Protocol):
    """The outbox's mute; async because it lives in the control DB, off the event loop."""

    async def mute(self, until: datetime) -> None: ...

    async def unmute(self) -> int: ...

    async def muted_until(self) -> datetime | None: ...


@dataclass(frozen=True, slots=True)
class Follow:
    """Settings of ``/tail NAME follow``."""

    every: float = 2.0
    duration: float = 120.0


@dataclass(slots=True)
class Reply:
    messages: list[Message]
    updates: AsyncIterator[Message] | None = None  # edits of the last message, for follow


class Usage(Exception):
    """A wrong or missing argument; the text is the one line the user sees."""


def command_name(word: str) -> str:
    """``/Restart@MyBot`` -> ``restart``: the name a command goes by, whatever the chat sent."""
    return word.lstrip("/").split("@", 1)[0].lower()


def _workflow_of(command: str, args: Sequence[str]) -> str | None:
    """The workflow a command is about, for the audit log (``/mute 2h`` is about none)."""
    return args[0] if args and command not in ("mute", "unmute") else None


def line(text: str) -> Reply:
    return Reply([Message(text)])


class CommandRouter:
    """Parses, authorises nothing (the transport did), executes, audits, renders."""

    def __init__(
        self,
        api: SupervisorAPI,
        muter: Muter,
        audit: AuditLog,
        *,
        follow: Follow | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.api = api
        self.muter = muter
        self.audit = audit
        self.follow = follow or Follow()
        self.clock = clock

    async def handle(self, command: str, args: Sequence[str], actor: Actor) -> Reply:
        """Run one command; never raises (errors become a short apology line)."""
        command = command_name(command)
        args = [arg for arg in args if arg]
        try:
            reply = await self._dispatch(command, list(args))
            outcome, detail_text = "ok", reply.messages[0].text if reply.messages else ""
        except (Usage, SupervisorError) as exc:
            reply, outcome, detail_text = line(esc_clip(str(exc), 1000)), "refused", str(exc)
        except Exception as exc:
            log.exception("command /%s %s failed", command, " ".join(args))
            reply = line(f"Sorry, /{esc(command)} failed: {esc(type(exc).__name__)}. It is logged.")
            outcome, detail_text = "failed", repr(exc)
        if command in MUTATING or outcome != "ok":
            await self._audit(actor, command, list(args), outcome=outcome, text=detail_text)
        return reply

    async def ignore_offline(
        self, command: str, args: Sequence[str], actor: Actor, age: float
    ) -> Reply:
        """The answer to a mutating command that waited in Telegram while the bot was down."""
        text = (
            f"ignored: /{command} was sent while the bot was offline ({format_duration(age)} ago)"
        )
        await self._audit(actor, command, list(args), outcome="ignored", text=text)
        return line(esc(text) + "; send it again if you still want it.")

    async def _audit(
        self,
        actor: Actor,
        command: str,
        args: list[str],
        *,
        outcome: str,
        text: str,
    ) -> None:
        """Record the command in a thread: the control DB may be slow or locked."""
        workflow = _workflow_of(command, args)
        try:
            await asyncio.to_thread(
                self.audit.record,
                actor,
                command,
                args,
                outcome=outcome,
                detail=text,
                workflow=workflow,
            )
        except Exception:
            log.exception("audit log write failed")

    async def _dispatch(self, command: str, args: list[str]) -> Reply:
        match command:
            case "status":
                return await self._status(args)
            case "workflows":
                return Reply([names_message(await self.api.status())])
            case "start" | "stop" | "restart" | "pause" | "resume":
                return await self._control(command, args)
            case "tail":
                return await self._tail(args)
            case "mute":
                return await self._mute(args)
            case "unmute":
                held = await self.muter.unmute()
                return line(
                    f"🔔 Alerts on again. {held} held alerts summarised."
                    if held
                    else "🔔 Alerts on again."
                )
            case "help":
                return line(HELP)
            case _:
                raise Usage(f"unknown command /{command}; try /help")

    def _name(self, command: str, args: list[str], extra: str = "") -> str:
        if not args:
            known = ", ".join(self.api.names) or "none configured"
            raise Usage(f"usage: /{command} NAME{extra} (workflows: {known})")
        name = args[0]
        if name not in self.api.names:
            raise UnknownWorkflow(name, self.api.names)
        return name

    async def _status(self, args: list[str]) -> Reply:
        if not args:
            return Reply(overview(await self.api.status()))
        name = self._name("status", args)
        [status] = await self.api.status(name)
        events = await self.api.recent_events(name, 5)
        audit = await asyncio.to_thread(self.audit.recent, name, 3)
        return Reply([detail(status, events, audit, self.clock())])

    async def _control(self, command: str, args: list[str]) -> Reply:
        name = self._name(command, args)
        if len(args) > 1:
            raise Usage(f"usage: /{command} NAME (one workflow at a time)")
        action = getattr(self.api, command)
        status = await action(name)
        done = {
            "start": "▶️ started",
            "stop": "⏹ stopped",
            "restart": "🔁 restarted",
            "pause": "⏸ paused (stays paused across restarts)",
            "resume": "▶️ resumed",
        }[command]
        pid = f" (pid {status.pid})" if status.pid else ""
        return line(f"<b>{esc(name)}</b> {done}{pid}")

    async def _tail(self, args: list[str]) -> Reply:
        name = self._name("tail", args, " [LINES|follow]")
        option = args[1].lower() if len(args) > 1 else str(TAIL_DEFAULT)
        if option == "follow":
            lines = await self.api.tail(name, TAIL_DEFAULT)
            first = tail_message(name, lines, following=" (following)")
            return Reply([first], self._follow(name))
        # isdecimal, not isdigit: '²' is a digit that int() refuses.
        if not option.isdecimal() or not 1 <= int(option) <= TAIL_MAX:
            raise Usage(
                f"usage: /tail NAME [LINES] with LINES from 1 to {TAIL_MAX}, or /tail NAME follow"
            )
        return Reply([tail_message(name, await self.api.tail(name, int(option)))])

    async def _follow(self, name: str) -> AsyncIterator[Message]:
        """An update every ``follow.every`` seconds; the last one says following stopped."""
        loop = asyncio.get_running_loop()
        end = loop.time() + self.follow.duration
        while True:
            await asyncio.sleep(self.follow.every)
            left = end - loop.time()
            last = left < self.follow.every
            note = " (stopped following)" if last else f" (following, {format_duration(left)} left)"
            yield tail_message(name, await self.api.tail(name, TAIL_DEFAULT), following=note)
            if last:
                return

    async def _mute(self, args: list[str]) -> Reply:
        if len(args) > 1:
            raise Usage("usage: /mute [DURATION], like /mute 30m or /mute 2h")
        try:
            seconds = parse_duration(args[0] if args else DEFAULT_MUTE)
        except ValueError as exc:
            raise Usage(str(exc)) from exc
        until = self.clock() + timedelta(seconds=seconds)
        await self.muter.mute(until)
        return line(
            f"🔕 Muted for {format_duration(seconds)} (until {until:%H:%M} UTC). "
            "Hangs and give-ups still come through; the rest is summarised at the end."
        )
