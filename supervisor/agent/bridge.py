"""Turns of bridge sessions: one in flight per session, within time, rounds and money.

``AgentBridge.turn`` is what every transport calls. It picks the backend
(``AGENT_BACKEND``; the offline scripted agent when Claude is not
configured), keeps one turn in flight per session (a second message waits
for the first), and bounds each turn:

- time: ``AGENT_TIMEOUT_SECONDS`` of work; the time a proposal waits for a
  person's tap (up to ``AGENT_APPROVAL_SECONDS``) is not counted;
- tool rounds: ``runner.MAX_ROUNDS``;
- money: the day's cap ``AGENT_MAX_USD_PER_DAY``, shared with ``/why`` and
  heal through one ledger (``who = "bridge"``), and a session may spend at
  most ``SESSION_SHARE_OF_DAY`` of it in all its turns;
- Stop: ``stop(session_id)`` cancels the turn at once (the API call, the
  tool runner, Claude Code's process group).

A turn that ends early still returns a ``TurnResult``, with ``ended`` saying
why; the session is stored after every turn, and marked busy while one runs,
so a restart in the middle is noticed (``SessionStore.interrupted``).
What it does not promise: the spend of concurrent sessions is checked
against the ledger before each turn, so together they may overshoot the
day's cap by what their turns in flight cost.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import shutil
import time
from collections import defaultdict
from collections.abc import Callable

import sqlalchemy as sa

from supervisor.agent.runner import MAX_OUTPUT_TOKENS, Runner, TurnContext
from supervisor.agent.scripted import ScriptedRunner
from supervisor.agent.sessions import SessionStore
from supervisor.agent.types import (
    Backend,
    Decision,
    Proposal,
    Session,
    Step,
    TurnObserver,
    TurnResult,
    TurnUsage,
)
from supervisor.agentsettings import AgentSettings
from supervisor.api import SupervisorAPI
from supervisor.claudeclient import is_api_error, unavailable_reason
from supervisor.secrets import Redactor, secret_values
from supervisor.spend import Budget, CapReached, SpendLedger
from workflows.prices import price_of

log = logging.getLogger("supervisor")
SESSION_SHARE_OF_DAY = 0.5
SPENDER = "bridge"
WAITING_POLL = 0.2
CANCEL_GRACE_SECONDS = 5.0  # Claude Code gets SIGTERM, then SIGKILL after 3 s


def backend_for(settings: AgentSettings) -> Backend:
    """The backend that answers: the scripted one when the built-in has no key."""
    if settings.agent_backend == "builtin" and not settings.configured:
        return "scripted"
    return settings.agent_backend


class BackendUnavailable(Exception):
    """``AGENT_BACKEND`` names a backend this machine cannot run; the text is one line."""


def check_backend(settings: AgentSettings) -> None:
    """Refuse at start what cannot work: Claude Code without ``claude``, or asked to tap reads."""
    if settings.agent_backend == "claude-code" and shutil.which("claude") is None:
        raise BackendUnavailable(
            "AGENT_BACKEND=claude-code but 'claude' is not on PATH; install Claude Code "
            "(npm install -g @anthropic-ai/claude-code) or use AGENT_BACKEND=builtin"
        )
    if settings.agent_backend == "claude-code" and settings.agent_auto_approve == "none":
        raise BackendUnavailable(
            "AGENT_AUTO_APPROVE=none needs AGENT_BACKEND=builtin: Claude Code reads files "
            "itself, so its reads cannot wait for a tap"
        )


def runner_for(backend: Backend) -> Runner:
    """The runner of ``backend``."""
    if backend == "claude-code":
        from supervisor.agent.claudecode import ClaudeCodeRunner

        runner: Runner = ClaudeCodeRunner()
        return runner
    if backend == "builtin":
        from supervisor.agent.builtin import BuiltinRunner  # the SDK: seconds to import

        return BuiltinRunner()
    return ScriptedRunner()


class AgentBridge:
    """Sessions and their turns, for every transport."""

    def __init__(
        self,
        api: SupervisorAPI,
        engine: sa.Engine,
        settings: AgentSettings,
        *,
        redactor: Redactor | None = None,
        runner: Runner | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """``redactor`` knows the caller's secrets (the bot token); the API key is added."""
        self.api = api
        self.settings = settings
        self.store = SessionStore(engine, clock=clock)
        self.ledger = SpendLedger(
            engine, cap_usd=settings.agent_max_usd_per_day, clock=clock, zone=settings.zone
        )
        self.redactor = (redactor or Redactor()).including(secret_values(settings))
        self.backend = backend_for(settings)
        self._runner = runner  # made at the first turn: the SDK takes seconds to import
        self._making_runner = asyncio.Lock()
        self._locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._running: dict[str, asyncio.Task[TurnResult]] = {}
        self._stopped: set[str] = set()

    def busy(self, session_id: str) -> bool:
        """Whether a turn of the session runs or waits now (the next message will wait)."""
        return self._locks[session_id].locked()

    def stop(self, session_id: str) -> bool:
        """Cancel the session's running turn; False if none runs."""
        task = self._running.get(session_id)
        if task is None or task.done():
            return False
        self._stopped.add(session_id)
        task.cancel()
        return True

    async def turn(self, session: Session, text: str, observer: TurnObserver) -> TurnResult:
        """Answer ``text`` in ``session`` (updated and stored in place), bounded as above."""
        async with self._locks[session.id]:
            fresh = await asyncio.to_thread(self.store.get, session.id)
            if fresh is not None:
                session.__dict__.update(fresh.__dict__)
            refused = await self._refusal(session)
            if refused is not None:
                return TurnResult("", TurnUsage(None), ended=refused)
            context = await self._context(session, observer)
            if not session.title:
                session.title = " ".join(text.split())[:60]
            await asyncio.to_thread(self.store.save, session, busy=True)
            result: TurnResult | None = None
            try:
                result = await self._bounded(session.id, text, context)
            finally:
                await self._settle(session, context, result)
            # What the model says goes to a chat: it may echo what it was never sent.
            return dataclasses.replace(result, text=context.redactor.redact(result.text))

    async def _refusal(self, session: Session) -> str | None:
        """Why a turn may not start (a cap reached), or None."""
        if self.backend == "scripted":
            return None
        day = self.settings.agent_max_usd_per_day
        if await asyncio.to_thread(self.ledger.spent_today) >= day:
            return f"today's spend on Claude is at the cap (${day:.2f} a day)"
        if session.cost_usd >= day * SESSION_SHARE_OF_DAY:
            return (
                f"this session has spent ${session.cost_usd:.2f}, its cap "
                f"(${day * SESSION_SHARE_OF_DAY:.2f}); /new starts a fresh one"
            )
        return None

    async def _context(self, session: Session, observer: TurnObserver) -> TurnContext:
        workspace = await self.api.workspace(session.workflow)
        model = self.settings.anthropic_model
        day = self.settings.agent_max_usd_per_day
        left_today = day - await asyncio.to_thread(self.ledger.spent_today)
        left_in_session = day * SESSION_SHARE_OF_DAY - session.cost_usd
        budget = Budget(
            price_of(model, self.settings.agent_prices),
            max(0.0, min(left_today, left_in_session)),
            MAX_OUTPUT_TOKENS,
        )
        return TurnContext(
            session=session,
            workspace=workspace,
            observer=_Clocked(observer),
            api=self.api,
            settings=self.settings,
            redactor=self.redactor.including(workspace.secrets),
            budget=budget,
        )

    async def _bounded(self, session_id: str, text: str, context: TurnContext) -> TurnResult:
        """The runner's answer, or why there is none (stopped, time, cap, an outage)."""
        async with self._making_runner:  # the SDK's import off the loop (its progress shows)
            if self._runner is None:
                self._runner = await asyncio.to_thread(runner_for, self.backend)
        task = asyncio.create_task(self._runner.turn(text, context))
        self._running[session_id] = task
        clocked = context.observer
        assert isinstance(clocked, _Clocked)
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            while not task.done():
                left = started + self.settings.agent_timeout_seconds + clocked.waited - loop.time()
                if left <= 0 and not clocked.waiting:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
                    return self._early(context, "time limit reached")
                # While a tap is awaited the clock stands still; look again shortly.
                await asyncio.wait({task}, timeout=WAITING_POLL if clocked.waiting else left)
            return task.result()
        except asyncio.CancelledError:
            if session_id in self._stopped:
                return self._early(context, "stopped")
            raise
        except CapReached:
            return self._early(context, "cost cap reached")
        except Exception as exc:
            if is_api_error(exc):
                return self._early(context, f"Claude unavailable ({unavailable_reason(exc)})")
            log.exception("bridge: a turn of session %s failed", session_id)
            return self._early(context, f"failed ({type(exc).__name__}; it is logged)")
        finally:
            if not task.done():  # we were cancelled (the bot stops): let the runner clean up
                task.cancel()
                await asyncio.wait({task}, timeout=CANCEL_GRACE_SECONDS)
            self._running.pop(session_id, None)
            self._stopped.discard(session_id)

    def _early(self, context: TurnContext, why: str) -> TurnResult:
        budget = context.budget
        usage = TurnUsage(
            self.settings.anthropic_model if budget.tally.input_tokens else None,
            budget.tally.input_tokens,
            budget.tally.output_tokens,
            budget.spent(),
        )
        return TurnResult("", usage, ended=why)

    async def _settle(
        self, session: Session, context: TurnContext, result: TurnResult | None
    ) -> None:
        """Count the turn's spend in the session and the day's ledger, and store the session.

        The spend is what the turn says it cost (Claude Code prices its own calls,
        cache reads included), or what the budget counted when it did not end.
        """
        tally = context.budget.tally
        spent = result.usage.cost_usd if result is not None else context.budget.spent()
        session.turns += 1
        session.input_tokens += tally.input_tokens
        session.output_tokens += tally.output_tokens
        session.cost_usd += spent
        try:
            if tally.input_tokens or tally.output_tokens:
                await asyncio.to_thread(
                    self.ledger.record,
                    self.settings.anthropic_model,
                    tally.input_tokens,
                    tally.output_tokens,
                    spent,
                    who=SPENDER,
                )
            await asyncio.to_thread(self.store.save, session, busy=False)
        except sa.exc.SQLAlchemyError:
            log.exception("bridge: could not store session %s", session.id)


class _Clocked:
    """An observer that knows how long its proposals waited for a person."""

    def __init__(self, inner: TurnObserver) -> None:
        self.inner = inner
        self.waited = 0.0
        self.waiting = False

    async def step(self, step: Step) -> None:
        await self.inner.step(step)

    async def acted(self, proposal: Proposal, decision: Decision, outcome: str) -> None:
        await self.inner.acted(proposal, decision, outcome)

    async def approve(self, proposal: Proposal) -> Decision:
        loop = asyncio.get_running_loop()
        began, self.waiting = loop.time(), True
        try:
            return await self.inner.approve(proposal)
        finally:
            self.waiting = False
            self.waited += loop.time() - began
