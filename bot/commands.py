"""The command layer: one implementation of every chat command, for every transport.

A command is a name and its arguments; the answer is a list of messages
(long answers are split), plus, for ``/tail NAME follow``, a stream of
updates the transport shows by editing one message, for ``/logs NAME`` a
file, and for ``/chart`` a picture. Bad arguments and unknown workflows get
one line saying what would work; a command that needs a name and got none
offers the names as buttons.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta, tzinfo
from typing import TYPE_CHECKING, Protocol

from bot.audit import Actor, AuditLog
from bot.cost import cost_messages, usd
from bot.fleet import fleet_overview
from bot.heal import proposal_key as heal_key
from bot.localtime import local_time
from bot.outbox import Mute
from bot.render import (
    HELP,
    chart_button,
    detail,
    greeting,
    mutes_line,
    name_buttons,
    name_picker,
    names_message,
    overview,
    stop_button,
    tail_message,
)
from bot.statuspages import ACTION as PAGES
from bot.statuspages import list_page, overview_page, paged
from bot.text import Message, esc, esc_clip, format_duration, parse_duration
from bot.transport import Document
from bot.why import evidence_document, looking_message, verdict_message
from supervisor.api import SupervisorAPI, SupervisorError, UnknownWorkflow
from supervisor.events import SpendSummary

if TYPE_CHECKING:
    from bot.observe.pictures import Charts

log = logging.getLogger("bot")

TAIL_DEFAULT = 30
TAIL_MAX = 200
LOG_FILE_BYTES = 1024 * 1024  # /logs: enough to read the story, small enough for a phone
DEFAULT_MUTE = "1h"
CHART_WINDOWS = ("24h", "7d")  # ``bot.observe.pictures.WINDOWS``
CHART_USAGE = "usage: /chart [NAME] [24h|7d]"
_LOOKS_LIKE_A_WINDOW = re.compile(r"^\d+[a-z]+$", re.IGNORECASE)
MUTATING = frozenset(
    {"start", "stop", "restart", "pause", "resume", "mute", "unmute", "ack"}
    | {"fix", "healapply", "healreject", "healrollback", "budgetonce", "budgetraise"}
)
NEEDS_NAME = frozenset(
    {"start", "stop", "restart", "pause", "resume", "tail", "logs", "ack", "fix"}
)
COMMANDS: dict[str, str] = {
    "status": "every workflow at a glance, or one in detail",
    "workflows": "the configured workflows",
    "start": "start a workflow",
    "stop": "stop a workflow",
    "restart": "restart a workflow",
    "pause": "stop a workflow and keep it stopped",
    "resume": "resume a paused workflow",
    "tail": "the last log lines of a workflow",
    "logs": "the last 1 MB of a workflow's log, as a file",
    "chart": "a picture: one workflow's day or week, or everyone's uptime",
    "why": "why a workflow failed: its evidence, explained",
    "fix": "let Claude propose a fix, proven before you apply it",
    "ask": "ask the agent about a workflow (or just write to me)",
    "new": "start a fresh agent session",
    "sessions": "recent agent sessions",
    "mute": "hold alerts of one workflow or all for a while (default 1h)",
    "unmute": "end a mute",
    "ack": "stop the reminders of a workflow that gave up",
    "cost": "what each workflow's agents spent, highest first",
    "help": "what the bot can do",
}


class Muter(Protocol):
    """The outbox's mutes and reminders; async because they live in the control DB.

    ``workflow`` None means every workflow (the chat's mute).
    """

    async def mute(self, until: datetime, workflow: str | None = None) -> None: ...

    async def unmute(self, workflow: str | None = None) -> int: ...

    async def mutes(self) -> list[Mute]: ...

    async def acknowledge(self, workflow: str) -> int: ...


@dataclass(frozen=True, slots=True)
class Follow:
    """Settings of ``/tail NAME follow``."""

    every: float = 2.0
    duration: float = 120.0


@dataclass(frozen=True, slots=True)
class FollowUpdate:
    """One step of ``/tail NAME follow``.

    ``message`` is the whole tail (Telegram edits the first message to it),
    ``new_lines`` what was printed since the last step (the console prints
    only those), ``ended`` why following stopped, on the last step.
    """

    message: Message
    new_lines: tuple[str, ...]
    ended: str | None = None


@dataclass(slots=True)
class Reply:
    messages: list[Message]
    updates: AsyncIterator[FollowUpdate] | None = None  # for follow: edits of the last message
    key: str | None = None  # the outbox key the last message and its updates share
    # Sent directly, not through the outbox: ``/logs``'s file, ``/chart``'s photo.
    document: Document | None = None
    later: Awaitable[Message] | None = None  # replaces the last message when ready (``/why``)


class Usage(Exception):
    """A wrong or missing argument; the text is the one line the user sees."""


class NameMissing(Exception):
    """A command that needs a workflow name got none; answered with the names as buttons."""

    def __init__(self, command: str, usage: str) -> None:
        super().__init__(usage)
        self.command = command
        self.usage = usage


def command_name(word: str) -> str:
    """``/Restart@MyBot`` -> ``restart``: the name a command goes by, whatever the chat sent."""
    return word.lstrip("/").split("@", 1)[0].lower()


def addressee(word: str) -> str | None:
    """``/status@other_bot`` -> ``other_bot``: the bot a command names, if it names one."""
    _, at, bot = word.partition("@")
    return bot if at else None


def mutates(command: str, args: Sequence[str]) -> bool:
    """Whether a command changes anything: ``/restart`` alone only offers the names."""
    return command in MUTATING and (bool(args) or command not in NEEDS_NAME)


def new_lines(previous: Sequence[str], current: Sequence[str]) -> list[str]:
    """The lines of ``current`` printed after ``previous``, two tails of the same log.

    The newest lines of ``previous`` that start ``current`` are the overlap;
    what follows it is new. Repeated lines make it ambiguous, and the
    longest overlap wins: a line repeated exactly may be missed, never
    printed twice. No overlap: everything in ``current`` is new.
    """
    for start in range(len(previous)):
        overlap = len(previous) - start
        if list(current[:overlap]) == list(previous[start:]):
            return list(current[overlap:])
    return list(current)


def line(text: str) -> Reply:
    return Reply([Message(text)])


class CommandRouter:
    """Parses, authorises nothing (the transport did), executes, audits, renders.

    ``timezone`` (``ALERT_TIMEZONE``) is the zone of every time a reply shows.
    ``charts`` draws ``/chart``'s pictures (``bot.observe.pictures.attach`` sets it);
    without it ``/chart`` says it is not available.
    """

    def __init__(
        self,
        api: SupervisorAPI,
        muter: Muter,
        audit: AuditLog,
        *,
        follow: Follow | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        timezone: tzinfo = UTC,
        charts: Charts | None = None,
    ) -> None:
        self.api = api
        self.charts = charts
        self.muter = muter
        self.audit = audit
        self.follow = follow or Follow()
        self.clock = clock
        self.timezone = timezone
        self._follows: dict[int | None, _FollowStop] = {}  # chat -> its one live follow

    async def handle(self, command: str, args: Sequence[str], actor: Actor) -> Reply:
        """Run one command; never raises (errors become a short apology line)."""
        command = command_name(command)
        args = [arg for arg in args if arg]
        try:
            reply = await self._dispatch(command, list(args), actor)
            outcome, detail_text = "ok", reply.messages[0].text if reply.messages else ""
        except NameMissing as exc:
            reply, outcome, detail_text = Reply([self._picker(exc)]), "ok", exc.usage
        except (Usage, SupervisorError) as exc:
            reply, outcome, detail_text = line(esc_clip(str(exc), 1000)), "refused", str(exc)
        except Exception as exc:
            log.exception("command /%s %s failed", command, " ".join(args))
            reply = line(f"Sorry, /{esc(command)} failed: {esc(type(exc).__name__)}. It is logged.")
            outcome, detail_text = "failed", repr(exc)
        if mutates(command, args) or outcome != "ok":
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
        """Record the command (off the event loop: the control DB may be slow or locked)."""
        workflow = self._workflow_of(command, args)
        await self.audit.record_soon(
            actor, command, args, outcome=outcome, detail=text, workflow=workflow
        )

    def _workflow_of(self, command: str, args: Sequence[str]) -> str | None:
        """The workflow a command is about, for the audit log (``/mute 2h`` is about none)."""
        if not args or (command in ("mute", "unmute") and args[0] not in self.api.names):
            return None
        return args[0]

    async def _dispatch(self, command: str, args: list[str], actor: Actor) -> Reply:
        match command:
            case "start" if not args:
                return Reply([greeting(await self.api.status())])
            case "status":
                return await self._status(args)
            case "statuspage":
                return await self._status_page(args)
            case "workflows":
                return Reply([names_message(await self.api.status())])
            case "start" | "stop" | "restart" | "pause" | "resume":
                return await self._control(command, args)
            case "tail":
                return await self._tail(args, actor)
            case "unfollow":
                return self._unfollow(args, actor)
            case "logs":
                return await self._logs(args)
            case "chart":
                return await self._chart(args)
            case "why":
                return self._why(args)
            case "evidence":
                return await self._evidence(args)
            case "fix":
                return self._fix(args)
            case "healapply" | "healreject" | "healrollback" | "healpatch" | "healretry":
                return await self._heal(command, args, actor)
            case "mute":
                return await self._mute(args)
            case "unmute":
                return await self._unmute(args)
            case "ack":
                return await self._ack(args)
            case "cost":
                return Reply(cost_messages(await self.api.status(), await self.api.own_spend()))
            case "budgetonce" | "budgetraise":
                return await self._budget(command, args, actor)
            case "help":
                return line(HELP)
            case _:
                raise Usage(f"unknown command /{command}; try /help")

    def _name(self, command: str, args: list[str], extra: str = "") -> str:
        if not args:
            raise NameMissing(command, f"usage: /{command} NAME{extra}")
        name = args[0]
        if name not in self.api.names:
            raise UnknownWorkflow(name, self.api.names)
        return name

    def _picker(self, missing: NameMissing) -> Message:
        return name_picker(missing.command, self.api.names, missing.usage)

    async def _status(self, args: list[str]) -> Reply:
        if not args:
            return await self._overview()
        name = self._name("status", args)
        [status] = await self.api.status(name)
        events = await self.api.recent_events(name, 5)
        audit = await asyncio.to_thread(self.audit.recent, name, 3)
        message = detail(status, events, audit, self.clock())
        if self.charts is not None:  # 📈: this workflow's last 24 h as a picture
            message = replace(message, buttons=(*message.buttons, *chart_button(name)))
        return Reply([message])

    async def _overview(self, key: str | None = None) -> Reply:
        """Every workflow, by node in a fleet; past a page of them the overview with pages
        (``key``: the reply whose message a page button turns back into it)."""
        now = self.clock()
        note = mutes_line(await self.muter.mutes(), self.timezone, now)
        nodes = await self.api.nodes()
        statuses = await self.api.status()
        if paged(statuses):
            key = key or uuid.uuid4().hex[:8]
            page = overview_page(
                statuses, nodes, note=note, tz=self.timezone, now=now.timestamp(), key=key
            )
            return Reply([page], key=f"{PAGES}:{key}")
        messages = (
            fleet_overview(statuses, nodes, note, self.timezone, now.timestamp())
            if nodes
            else overview(statuses, note)
        )
        buttons, _ = name_buttons("status", [status.name for status in statuses])
        return Reply([*messages[:-1], replace(messages[-1], buttons=buttons)])

    async def _status_page(self, args: list[str]) -> Reply:
        """A page button of a long ``/status``: the same message becomes that page."""
        if len(args) != 2 or not args[1].isdecimal():
            raise Usage("usage: a page button of /status")
        key, number = args[0], int(args[1])
        if number == 0:
            return await self._overview(key)
        page = list_page(await self.api.status(), number, key)
        return Reply([page], key=f"{PAGES}:{key}")

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

    async def _tail(self, args: list[str], actor: Actor) -> Reply:
        name = self._name("tail", args, " [LINES|follow]")
        option = args[1].lower() if len(args) > 1 else str(TAIL_DEFAULT)
        if option == "follow":
            return await self._start_follow(name, actor.chat_id)
        # isdecimal, not isdigit: '²' is a digit that int() refuses.
        if not option.isdecimal() or int(option) < 1:
            raise Usage(
                f"usage: /tail NAME [LINES] with LINES from 1 to {TAIL_MAX}, or /tail NAME follow"
            )
        note = ""
        if int(option) > TAIL_MAX:
            note = f" (the last {TAIL_MAX}, the most a message shows; /logs {esc(name)} has more)"
        lines = await self.api.tail(name, min(int(option), TAIL_MAX))
        return Reply([tail_message(name, lines, following=note)])

    async def _start_follow(self, name: str, chat: int | None) -> Reply:
        """Follow ``name`` in ``chat``, ending the chat's earlier follow: one per chat."""
        self._end_follow(chat, "another follow started")
        stop = self._follows[chat] = _FollowStop(name)
        lines = await self.api.tail(name, TAIL_DEFAULT)
        first = _following(name, lines, " (following)")
        key = f"follow:{chat}:{uuid.uuid4().hex[:12]}"  # new per follow: its own message to edit
        return Reply([first], self._follow(name, chat, lines, stop), key=key)

    def _end_follow(self, chat: int | None, reason: str, name: str | None = None) -> bool:
        """Ask the chat's follow (of ``name``, if given) to stop; False if there is none."""
        stop = self._follows.get(chat)
        if stop is None or (name is not None and stop.name != name):
            return False
        stop.end(reason)
        return True

    def _unfollow(self, args: list[str], actor: Actor) -> Reply:
        """The Stop button: the follow's last update says it stopped, no other reply."""
        if self._end_follow(actor.chat_id, "stopped", args[0] if args else None):
            return Reply([])
        return line("Nothing is being followed here.")

    async def _follow(
        self, name: str, chat: int | None, lines: list[str], stop: _FollowStop
    ) -> AsyncIterator[FollowUpdate]:
        """An update every ``follow.every`` seconds until time is up or the follow is stopped."""
        loop = asyncio.get_running_loop()
        end = loop.time() + self.follow.duration
        previous = lines
        try:
            while True:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.follow.every):
                        await stop.ended.wait()
                left = end - loop.time()
                ended = stop.reason or ("time is up" if left < self.follow.every else None)
                current = await self.api.tail(name, TAIL_DEFAULT)
                fresh = tuple(new_lines(previous, current))
                if ended is not None:
                    note = f" (stopped following: {esc(ended)})"
                    yield FollowUpdate(tail_message(name, current, following=note), fresh, ended)
                    return
                note = f" (following, {format_duration(left)} left)"
                yield FollowUpdate(_following(name, current, note), fresh)
                previous = current
        finally:
            if self._follows.get(chat) is stop:
                del self._follows[chat]

    async def _logs(self, args: list[str]) -> Reply:
        name = self._name("logs", args)
        data = await self.api.log_bytes(name, LOG_FILE_BYTES)
        if not data:
            return line(f"<b>{esc(name)}</b> has printed nothing yet.")
        caption = (
            f"<b>{esc(name)}</b>: the last {_size(len(data))} of its log "
            f"(at most {_size(LOG_FILE_BYTES)}, from the start of a line)"
        )
        return Reply([], document=Document(f"{name}.log", data, caption))

    async def _chart(self, args: list[str]) -> Reply:
        """``/chart [NAME] [24h|7d]``: one workflow's states over time, or every workflow's
        uptime as bars; a picture, sent like ``/logs``'s file. A name comes first, so a
        workflow called ``24h`` is still charted; a word shaped like a window that is not
        one is a usage error, any other word an unknown workflow."""
        rest = list(args)
        name = rest.pop(0) if rest and rest[0] in self.api.names else None
        if (
            name is None
            and rest
            and rest[0].lower() not in CHART_WINDOWS
            and not _LOOKS_LIKE_A_WINDOW.match(rest[0])
        ):
            raise UnknownWorkflow(rest[0], self.api.names)
        window = rest.pop(0).lower() if rest else CHART_WINDOWS[0]
        if window not in CHART_WINDOWS or rest:
            raise Usage(f"{CHART_USAGE} (a window of 24h or 7d)")
        if self.charts is None:
            return line("Charts are not available here.")
        if name is None:
            return Reply([], document=await self.charts.fleet(window))
        return Reply([], document=await self.charts.workflow(name, window))

    def _why(self, args: list[str]) -> Reply:
        """``/why NAME``: "looking…" at once, the answer edits it (normally within 30 s)."""
        name = self._name("why", args)
        return Reply(
            [looking_message(name)], key=f"why:{uuid.uuid4().hex}", later=self._verdict(name)
        )

    async def _verdict(self, name: str) -> Message:
        """The answer, or one line saying it could not be had (never an exception)."""
        try:
            return verdict_message(await self.api.why(name))
        except Exception as exc:
            log.exception("/why %s failed", name)
            failed = f"Sorry, /why {esc(name)} failed: {esc(type(exc).__name__)}. It is logged."
            return Message(failed)

    async def _evidence(self, args: list[str]) -> Reply:
        """The whole evidence pack a ``/why`` answer rests on, as a file."""
        name = self._name("evidence", args)
        filename, data = evidence_document(await self.api.evidence(name))
        caption = f"<b>{esc(name)}</b>: the evidence /why answers from (secrets redacted)"
        return Reply([], document=Document(filename, data, caption))

    def _fix(self, args: list[str]) -> Reply:
        """``/fix NAME [note]``: at once a line, then the outcome; the proposal is its own alert."""
        name = self._name("fix", args, " [note]")
        note = " ".join(args[1:]) or None
        first = Message(
            f"🩹 <b>{esc(name)}</b>: looking for a fix in a worktree of its repository; the "
            "proposal comes as its own message once its checks and smoke run are done"
        )
        return Reply([first], key=f"fix:{uuid.uuid4().hex}", later=self._proposal(name, note))

    async def _proposal(self, name: str, note: str | None) -> Message:
        try:
            proposal = await self.api.fix(name, note)
        except SupervisorError as exc:
            return Message(f"🩹 <b>{esc(name)}</b>: no proposal: {esc_clip(str(exc), 600)}")
        except Exception as exc:
            log.exception("/fix %s failed", name)
            return Message(
                f"Sorry, /fix {esc(name)} failed: {esc(type(exc).__name__)}. It is logged."
            )
        state = "ready for your decision" if proposal.ready else "refused by a gate"
        return Message(f"🩹 <b>{esc(name)}</b>: proposal {esc(proposal.id)} is {state} (below)")

    async def _heal(self, command: str, args: list[str], actor: Actor) -> Reply:
        """The proposal's buttons: Apply & restart, Reject, Roll back, the patch, Retry."""
        if not args:
            raise Usage(f"usage: /{command} PROPOSAL")
        target, who = args[0], actor.name
        if command == "healretry":
            name = self._name("fix", args)
            return line(f"Send <code>/fix {esc(name)} your note</code> to try again with a hint.")
        if command == "healpatch":
            filename, data = await self.api.heal_patch(target)
            caption = f"🩹 the whole patch of proposal {esc(target)}"
            return Reply([], document=Document(filename, data, caption))
        if command == "healapply":
            applied = await self.api.heal_apply(target, who)
            said = f"🩹 applying proposal {esc(applied.id)} (approved by {esc(who)})…"
        elif command == "healreject":
            await self.api.heal_reject(target, who)
            said = f"🩹 proposal {esc(target)} rejected by {esc(who)}; the live tree is unchanged"
        else:
            revert = await self.api.heal_rollback(target, who)
            said = f"↩️ proposal {esc(target)} rolled back (<code>{esc(revert[:10])}</code>)"
        return Reply([Message(said)], key=heal_key(target))

    async def _budget(self, command: str, args: list[str], actor: Actor) -> Reply:
        """The budget pause's buttons: [Resume once], [Raise ×2]."""
        name = self._name(command, args)
        if command == "budgetonce":
            status = await self.api.budget_resume(name, actor.name)
        else:
            status = await self.api.budget_raise(name, actor.name)
        spend = status.spend or SpendSummary()
        allowed = usd(spend.allowance_usd or 0.0)
        return line(f"💸▶️ <b>{esc(name)}</b> may spend {allowed} today ({status.state})")

    async def _mute(self, args: list[str]) -> Reply:
        """``/mute [NAME] [DURATION]``: one workflow, or all of them, for a while."""
        workflow = args[0] if args and args[0] in self.api.names else None
        durations = args[1:] if workflow else args
        if len(durations) > 1:
            raise Usage("usage: /mute [NAME] [DURATION], like /mute 30m or /mute NAME 2h")
        try:
            seconds = parse_duration(durations[0] if durations else DEFAULT_MUTE)
        except ValueError as exc:
            raise Usage(str(exc)) from exc
        now = self.clock()
        until = now + timedelta(seconds=seconds)
        await self.muter.mute(until, workflow)
        what = f"<b>{esc(workflow)}</b> muted" if workflow else "Muted"
        shown = local_time(until.timestamp(), self.timezone, now.timestamp())
        return line(
            f"🔕 {what} for {format_duration(seconds)} (until {shown}). "
            "Hangs and give-ups still come through; the rest is summarised at the end."
        )

    async def _unmute(self, args: list[str]) -> Reply:
        """``/unmute [NAME]``: end one workflow's mute, or the chat's."""
        if len(args) > 1:
            raise Usage("usage: /unmute [NAME]")
        workflow = self._name("unmute", args) if args else None
        held = await self.muter.unmute(workflow)
        what = f"<b>{esc(workflow)}</b>: alerts" if workflow else "Alerts"
        summary = f" {held} held alerts summarised." if held else ""
        return line(f"🔔 {what} on again.{summary}")

    async def _ack(self, args: list[str]) -> Reply:
        """``/ack NAME`` (the Ack button): stop repeating the workflow's give-up."""
        name = self._name("ack", args)
        if await self.muter.acknowledge(name):
            return line(f"👍 <b>{esc(name)}</b> acknowledged: its give-up is not repeated.")
        return line(f"<b>{esc(name)}</b> has no give-up waiting to be acknowledged.")


@dataclass(slots=True)
class _FollowStop:
    """How a follow is told to stop (Stop, or another follow in its chat), and why."""

    name: str
    reason: str | None = None
    ended: asyncio.Event = field(default_factory=asyncio.Event)

    def end(self, reason: str) -> None:
        self.reason = reason
        self.ended.set()


def _following(name: str, lines: Sequence[str], note: str) -> Message:
    """A tail being followed: its only button stops it."""
    return replace(tail_message(name, lines, following=note), buttons=(stop_button(name),))


def _size(count: int) -> str:
    """``512 bytes``, ``312 KB``, ``1.0 MB`` (from 1000 KB: a cut megabyte is not "1023 KB")."""
    if count < 1024:
        return f"{count} bytes"
    if count < 1000 * 1024:
        return f"{count // 1024} KB"
    return f"{count / (1024 * 1024):.1f} MB"
