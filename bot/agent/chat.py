"""The chat side of the bridge: which session a message belongs to, and how a turn shows.

A person's plain text (or ``/ask [NAME] text``) goes to a session of the
workflow it is about: the NAME given, else the workflow of the alert it
replies to (or the session of the answer it replies to), else the workflow
whose TOML ``topic`` is the forum topic it was written in, else the chat's
open session, else the only workflow; with several and no way to tell, the
bot asks with a button per workflow. A forum topic is a chat of its own, so
each topic keeps its own session.

While a turn runs the chat sees one quiet progress message, edited at most
every ``EDIT_SECONDS`` and only when its text changed (``bot.agent.progress``),
with a Stop button, and a typing action; a proposed change is a message of
its own with [Allow once] [Allow for this session] [Deny], and no answer
within ``AGENT_APPROVAL_SECONDS`` is a refusal. The answer is a new message,
Markdown rendered to Telegram HTML and split to fit, with a footer (tokens,
cost, session). Every turn and every decision on a proposal is audited.

What it does not promise: a proposal waiting when the bot restarts is gone
(its turn is gone with it); its buttons then say so when pressed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from bot.agent.markdown import split_html, to_telegram_html
from bot.agent.progress import Progress
from bot.audit import Actor, AuditLog
from bot.text import TELEGRAM_LIMIT, Button, Message, clip_html, esc, esc_clip
from supervisor.agent.bridge import AgentBridge
from supervisor.agent.types import Decision, Proposal, Session, Step, TurnResult
from supervisor.api import SupervisorAPI
from supervisor.cancelling import cancel

log = logging.getLogger("bot")

EDIT_SECONDS = 3.0  # at most one progress edit this often
TICK_SECONDS = 10.0  # the elapsed time is brought up to date this often without steps
TYPING_SECONDS = 4.5  # Telegram shows "typing" for about 5 s
DIFF_SHOWN = 3000
FOOTER_ROOM = 200
CLOSE_GRACE_SECONDS = 6.0  # a Claude Code turn ends its process group within about 3 s
ANSWER_PREFIX = "agent:"  # an answer's outbox key: agent:SESSION:TURN
DECISIONS: dict[str, Decision] = {"once": "once", "session": "session", "deny": "deny"}


class BridgeView(Protocol):
    """How a transport shows a turn: Telegram edits one message, the console prints lines."""

    async def show(self, chat: ChatPlace, messages: Sequence[Message], key: str | None) -> None:
        """Send ``messages``; with ``key``, a later call with the same key edits the message."""
        ...

    async def progress(self, chat: ChatPlace, key: str, message: Message, new: list[Step]) -> None:
        """Show the progress ``message`` (``new``: the steps since the last call)."""
        ...

    async def typing(self, chat: ChatPlace) -> None: ...


@dataclass(frozen=True, slots=True)
class ChatPlace:
    """Where a conversation happens: a chat, and a forum topic in it."""

    chat_id: int | None
    thread_id: int | None = None

    @property
    def key(self) -> str:
        """The sessions' chat key: a topic is a chat of its own."""
        if self.chat_id is None:
            return "console"
        return f"{self.chat_id}:{self.thread_id or 0}"


@dataclass(slots=True)
class _Pending:
    """A proposal waiting for a tap."""

    proposal: Proposal
    chat: ChatPlace
    session_id: str
    decided: asyncio.Future[tuple[Decision, str]] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class ChatBridge:
    """Routes chat messages to bridge sessions and shows their turns."""

    def __init__(
        self,
        bridge: AgentBridge,
        api: SupervisorAPI,
        view: BridgeView,
        audit: AuditLog,
        *,
        approval_seconds: float,
    ) -> None:
        self.bridge = bridge
        self.api = api
        self.view = view
        self.audit = audit
        self.approval_seconds = approval_seconds
        self._pending: dict[str, _Pending] = {}
        self._questions: dict[str, tuple[str, ChatPlace]] = {}  # waiting for a workflow pick
        self._turns: set[asyncio.Task[None]] = set()
        self._locks: dict[str, asyncio.Lock] = {}  # one turn per session, shown in order

    # -- entry points ----------------------------------------------------------------------

    async def ask(
        self,
        actor: Actor,
        chat: ChatPlace,
        text: str,
        *,
        workflow: str | None = None,
        replied: Session | None = None,
        replied_workflow: str | None = None,
    ) -> None:
        """Answer ``text`` in the session it belongs to (see the module docstring)."""
        text = text.strip()
        if not text:
            await self._say(chat, "usage: /ask [NAME] question, or just write to me")
            return
        try:
            session = await self._session(chat, text, workflow, replied, replied_workflow)
            if session is None:
                return
            lock = self._locks.setdefault(session.id, asyncio.Lock())
            if lock.locked():
                await self._say(
                    chat, "⏳ still working on your last message in this session; this one is next"
                )
            async with lock:
                await self._turn(actor, chat, session, text)
        except Exception as exc:
            log.exception("bridge: a message in %s failed", chat.key)
            await self._say(chat, f"Sorry, that failed: {esc(type(exc).__name__)}. It is logged.")

    async def pick(self, actor: Actor, question_id: str, index: str) -> None:
        """The button under "which workflow?" (its index: a name may not fit in the data)."""
        question = self._questions.pop(question_id, None)
        names = list(self.api.names)
        if question is None or not index.isdecimal() or int(index) >= len(names):
            return
        text, chat = question
        await self.ask(actor, chat, text, workflow=names[int(index)])

    async def decide(self, actor: Actor, approval_id: str, choice: str) -> str:
        """A tap on an approval's button; the short answer the button shows."""
        pending = self._pending.get(approval_id)
        decision = DECISIONS.get(choice)
        if pending is None or pending.decided.done():
            return "that proposal is no longer waiting"
        if decision is None:
            return "unknown choice"
        pending.decided.set_result((decision, actor.name))
        await self._audit(
            actor, "approve", pending.proposal.workflow, outcome=decision, proposal=pending.proposal
        )
        return {"once": "allowed once", "session": "allowed for this session"}.get(
            decision, "denied"
        )

    def stop(self, session_id: str) -> bool:
        """The Stop button."""
        return self.bridge.stop(session_id)

    async def new(self, chat: ChatPlace) -> Message:
        """``/new``: the next message starts a fresh session."""
        closed = await asyncio.to_thread(self.bridge.store.close, chat.key)
        what = "The next message starts a fresh session." if closed else "No session was open."
        return Message(f"🆕 {what}")

    async def sessions(self, chat: ChatPlace) -> Message:
        """``/sessions``: the chat's recent sessions, newest first."""
        recent = await asyncio.to_thread(self.bridge.store.recent, chat.key)
        if not recent:
            return Message("No sessions yet: write a question about a workflow to start one.")
        lines = ["<b>Recent sessions</b> (reply to an answer to continue its session)"]
        for session in recent:
            lines.append(
                f"• <code>{esc(session.id)}</code> <b>{esc(session.workflow)}</b>: "
                f"{esc_clip(session.title or '-', 60)} · {session.turns} turns · "
                f"${session.cost_usd:.3f}"
            )
        return Message(clip_html("\n".join(lines), TELEGRAM_LIMIT))

    async def interrupted(self) -> None:
        """Tell each chat whose turn a restart cut off that it should ask again."""
        for session in await asyncio.to_thread(self.bridge.store.interrupted):
            chat = _place(session.chat)
            if chat is not None:
                await self._say(
                    chat,
                    f"⚠️ The bot restarted while working on your message about "
                    f"<b>{esc(session.workflow)}</b>; send it again to continue "
                    f"(session <code>{esc(session.id)}</code> is kept).",
                )

    async def close(self) -> None:
        """Stop every turn (the bot is going down) and wait for them to clean up."""
        for pending in self._pending.values():
            if not pending.decided.done():
                pending.decided.set_result(("timeout", "shutdown"))
        turns = list(self._turns)
        for task in turns:
            task.cancel()
        if turns:
            await asyncio.wait(turns, timeout=CLOSE_GRACE_SECONDS)

    # -- sessions --------------------------------------------------------------------------

    async def _session(
        self,
        chat: ChatPlace,
        text: str,
        workflow: str | None,
        replied: Session | None,
        replied_workflow: str | None,
    ) -> Session | None:
        store, names = self.bridge.store, list(self.api.names)
        if replied is not None and replied.workflow not in names:
            replied = None  # its workflow is no longer configured
        if replied is not None and workflow in (None, replied.workflow):
            await asyncio.to_thread(store.reopen, replied)
            return replied
        current = await asyncio.to_thread(store.current, chat.key)
        if current is not None and current.workflow not in names:
            current = None
        topic = await self._topic_workflow(chat.thread_id)
        wanted = workflow or replied_workflow or topic or (current.workflow if current else None)
        if wanted is None and len(names) == 1:
            wanted = names[0]
        if wanted is None:
            await self._which(chat, text, names)
            return None
        if current is not None and current.workflow == wanted:
            return current
        return await asyncio.to_thread(store.create, chat.key, wanted, self.bridge.backend, text)

    async def _topic_workflow(self, thread_id: int | None) -> str | None:
        """The workflow whose TOML ``topic`` is this forum topic, if any."""
        if thread_id is None:
            return None
        for name in self.api.names:
            if (await self.api.workspace(name)).topic == thread_id:
                return name
        return None

    async def _which(self, chat: ChatPlace, text: str, names: Sequence[str]) -> None:
        question_id = uuid.uuid4().hex[:8]
        self._questions[question_id] = (text, chat)
        buttons = tuple(Button(n, f"askpick:{question_id}:{i}") for i, n in enumerate(names))
        await self.view.show(chat, [Message("Which workflow is this about?", buttons)], None)

    # -- a turn ----------------------------------------------------------------------------

    async def _turn(self, actor: Actor, chat: ChatPlace, session: Session, text: str) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._turns.add(task)
        observer = _Observer(self, actor, chat, session)
        await self._audit(actor, "ask", session.workflow, outcome="started", detail=text)
        result: TurnResult | None = None
        try:
            await observer.begin()
            result = await self.bridge.turn(session, text, observer)
        finally:
            await observer.end()
            await observer.finish(result)
            if task is not None:
                self._turns.discard(task)
        outcome = "ok" if result.ended is None else "ended"
        await self._audit(
            actor, "ask", session.workflow, outcome=outcome, detail=result.ended or ""
        )

    async def approve(self, chat: ChatPlace, session: Session, proposal: Proposal) -> Decision:
        """Show ``proposal`` with its buttons and wait for a tap, or the time limit."""
        approval_id = uuid.uuid4().hex[:10]
        pending = _Pending(proposal, chat, session.id)
        self._pending[approval_id] = pending
        key = f"approval:{approval_id}"
        await self.view.show(chat, [approval_message(proposal, approval_id)], key)
        try:
            decision, who = await asyncio.wait_for(pending.decided, self.approval_seconds)
        except TimeoutError:
            decision, who = "timeout", ""
        except asyncio.CancelledError:  # the turn was stopped: the buttons must go
            await self.view.show(chat, [decided_message(proposal, "timeout", "", ended=True)], key)
            raise
        finally:
            del self._pending[approval_id]
        await self.view.show(chat, [decided_message(proposal, decision, who)], key)
        return decision

    async def _say(self, chat: ChatPlace, text: str) -> None:
        await self.view.show(chat, [Message(text)], None)

    async def _audit(
        self,
        actor: Actor,
        command: str,
        workflow: str,
        *,
        outcome: str,
        proposal: Proposal | None = None,
        detail: str = "",
    ) -> None:
        args = [proposal.summary] if proposal else []
        text = (proposal.diff if proposal else detail)[:500]
        await self.audit.record_soon(
            actor, command, args, outcome=outcome, detail=text, workflow=workflow
        )


class _Observer:
    """One turn's progress message, typing action and approvals."""

    def __init__(
        self, chat_bridge: ChatBridge, actor: Actor, chat: ChatPlace, session: Session
    ) -> None:
        self.chat_bridge = chat_bridge
        self.actor = actor
        self.chat = chat
        self.session = session
        self.loop = asyncio.get_running_loop()
        self.progress = Progress(session.workflow, session.id, self.loop.time())
        self.key = f"progress:{session.id}:{uuid.uuid4().hex[:8]}"
        self.changed = asyncio.Event()
        self.fresh: list[Step] = []
        self.shown: str | None = None
        self.tasks: list[asyncio.Task[None]] = []

    async def begin(self) -> None:
        await self._show()
        self.tasks = [
            asyncio.create_task(self._edits()),
            asyncio.create_task(self._typing()),
        ]

    async def step(self, step: Step) -> None:
        self.progress.add(step, self.loop.time())
        self.fresh.append(step)
        self.changed.set()

    async def approve(self, proposal: Proposal) -> Decision:
        self.progress.waiting(proposal.summary, self.loop.time())
        self.changed.set()
        try:
            return await self.chat_bridge.approve(self.chat, self.session, proposal)
        finally:
            self.progress.waiting(None, self.loop.time())
            self.changed.set()

    async def acted(self, proposal: Proposal, decision: Decision, outcome: str) -> None:
        """Every change proposed, tapped or allowed for the session, and what came of it."""
        await self.chat_bridge._audit(
            self.actor,
            "agent-action",
            proposal.workflow,
            outcome=outcome.split(":", 1)[0],
            proposal=proposal,
            detail=f"{decision}: {outcome}",
        )

    async def end(self) -> None:
        await cancel(*self.tasks)

    async def finish(self, result: TurnResult | None) -> None:
        """The progress message's last edit; the answer follows it (none if the turn failed)."""
        ended = "failed" if result is None else result.ended
        final = self.progress.final(self.loop.time(), ended)
        try:
            await self.chat_bridge.view.progress(self.chat, self.key, final, self._take())
            if result is not None:
                answer = answer_messages(result, self.session)
                key = f"{ANSWER_PREFIX}{self.session.id}:{uuid.uuid4().hex[:8]}"  # one per answer
                await self.chat_bridge.view.show(self.chat, answer, key)
        except Exception:
            log.exception("bridge: could not show the end of a turn of %s", self.session.id)

    async def _edits(self) -> None:
        """Edit the progress message on news or every tick, never more often than allowed."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), TICK_SECONDS)
            self.changed.clear()
            try:
                await self._show()
            except Exception:  # a progress edit is decoration: never lose the answer for it
                log.exception("bridge: a progress edit failed")
            await asyncio.sleep(EDIT_SECONDS)

    async def _show(self) -> None:
        message = self.progress.render(self.loop.time())
        if message.text == self.shown:
            return
        self.shown = message.text
        await self.chat_bridge.view.progress(self.chat, self.key, message, self._take())

    def _take(self) -> list[Step]:
        fresh, self.fresh = self.fresh, []
        return fresh

    async def _typing(self) -> None:
        while True:
            try:
                await self.chat_bridge.view.typing(self.chat)
            except Exception as exc:  # a typing action is decoration: never fail a turn for it
                log.debug("typing action failed: %s", exc)
            await asyncio.sleep(TYPING_SECONDS)


def session_of_key(key: str | None) -> str | None:
    """The session whose answer was sent under outbox ``key``, if it was an answer."""
    if key is None or not key.startswith(ANSWER_PREFIX):
        return None
    return key.removeprefix(ANSWER_PREFIX).split(":", 1)[0] or None


def answer_messages(result: TurnResult, session: Session) -> list[Message]:
    """The answer: the model's Markdown as Telegram HTML, split to fit, with a footer."""
    body = to_telegram_html(result.text) if result.text.strip() else ""
    if result.ended is not None:
        body = (body + "\n\n" if body else "") + f"<i>⏹ {esc(result.ended)}</i>"
    chunks = split_html(body, TELEGRAM_LIMIT - FOOTER_ROOM) or [""]
    chunks[-1] = (chunks[-1] + "\n\n" + footer(result, session)).strip()
    return [Message(chunk) for chunk in chunks]


def footer(result: TurnResult, session: Session) -> str:
    usage = result.usage
    if usage.model is None:
        who = "offline agent" if session.backend == "scripted" else "no model call"
        return f"<i>{who} · session {esc(session.id)}</i>"
    tokens = f"{usage.input_tokens:,} in / {usage.output_tokens:,} out tokens"
    return (
        f"<i>{tokens} · ${usage.cost_usd:.3f} (session ${session.cost_usd:.3f}) · "
        f"session {esc(session.id)}</i>"
    )


def approval_message(proposal: Proposal, approval_id: str) -> Message:
    """The proposed change, its diff in an expandable quote, and the three buttons."""
    lines = [f"✋ <b>{esc(proposal.workflow)}</b>: the agent wants to {esc(proposal.summary)}"]
    if proposal.diff:
        diff = esc_clip(proposal.diff, DIFF_SHOWN)
        code = f'<pre><code class="language-diff">{diff}</code></pre>'
        lines.append(f"<blockquote expandable>{code}</blockquote>")
    lines.append(f"<i>or /approve {approval_id} once|session|deny</i>")
    buttons = (
        Button("Allow once", f"approve:{approval_id}:once"),
        Button("Allow for this session", f"approve:{approval_id}:session"),
        Button("Deny", f"approve:{approval_id}:deny"),
    )
    return Message("\n".join(lines), buttons)


def decided_message(
    proposal: Proposal, decision: Decision, who: str, *, ended: bool = False
) -> Message:
    """The proposal's message once decided (or its turn ended): what, by whom; no buttons."""
    by = f" by {esc(who)}" if who else ""
    if ended:
        return Message(
            f"✋ <b>{esc(proposal.workflow)}</b>: {esc(proposal.summary)} · "
            "⏹ the turn ended first: not done"
        )
    said = {
        "once": f"✅ allowed once{by}",
        "session": f"✅ allowed for this session{by}",
        "deny": f"❌ denied{by}",
        "timeout": "⌛ no answer in time: not done",
    }[decision]
    return Message(f"✋ <b>{esc(proposal.workflow)}</b>: {esc(proposal.summary)} · {said}")


def _place(key: str) -> ChatPlace | None:
    if key == "console":
        return ChatPlace(None)
    chat, _, thread = key.partition(":")
    try:
        return ChatPlace(int(chat), int(thread) or None)
    except ValueError:
        return None
