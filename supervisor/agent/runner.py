"""The one small interface every backend of the bridge implements, and what a turn gets.

A backend (the SDK's tool runner, Claude Code, the offline scripted agent)
takes the person's text and the turn's context, reports steps and asks for
approvals through ``context.observer``, updates ``context.session`` (its
history or Claude Code's session id) and returns the answer. Limits it must
keep: ``context.budget`` before every model call, ``max_rounds`` tool rounds;
the bridge enforces the time limit and Stop by cancelling the task, so a
backend must leave nothing running when cancelled.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Protocol

from supervisor.agent.changes import ChangeRefused
from supervisor.agent.types import (
    Decision,
    Proposal,
    Session,
    TurnObserver,
    TurnResult,
    Workspace,
)
from supervisor.agentsettings import AgentSettings
from supervisor.api import SupervisorAPI, SupervisorError
from supervisor.secrets import Redactor
from supervisor.spend import Budget

MAX_ROUNDS = 12  # tool rounds in one turn
MAX_OUTPUT_TOKENS = 4_096  # of one model call of a turn; the budget counts it in full


@dataclass(frozen=True, slots=True)
class TurnContext:
    """Everything one turn may use."""

    session: Session
    workspace: Workspace
    observer: TurnObserver
    api: SupervisorAPI
    settings: AgentSettings
    redactor: Redactor  # knows the bot token, the API key and the workflow's env values
    budget: Budget
    max_rounds: int = MAX_ROUNDS


class Runner(Protocol):
    """A backend of the bridge."""

    async def turn(self, text: str, context: TurnContext) -> TurnResult: ...


class NotDone(Exception):
    """A change that was not made (refused, unanswered, or failed); the text is for the agent."""


async def with_approval(
    context: TurnContext, proposal: Proposal, act: Callable[[], Awaitable[object]]
) -> str:
    """Ask for ``proposal`` (unless its kind is allowed for the session), then ``act``.

    The one funnel of every change an agent makes, whatever the backend: the
    diff shown is redacted (a key beside the edited line must not reach the
    chat), "Allow for this session" is remembered on the session, and every
    outcome, done or not, is reported to the observer (the audit log).
    Raises ``NotDone`` with what the agent is to be told.
    """
    proposal = replace(proposal, diff=context.redactor.redact(proposal.diff))
    decision: Decision = "session"
    if proposal.kind not in context.session.allowed:
        decision = await context.observer.approve(proposal)
    if decision == "session":
        context.session.allowed.add(proposal.kind)
    if decision not in ("once", "session"):
        await context.observer.acted(proposal, decision, "not done")
        raise NotDone(refusal(proposal, decision))
    try:
        await act()
    except (ChangeRefused, SupervisorError) as exc:
        await context.observer.acted(proposal, decision, f"failed: {exc}")
        raise NotDone(f"{proposal.summary}: not done, {exc}") from exc
    await context.observer.acted(proposal, decision, "done")
    return f"{proposal.summary}: done"


def refusal(proposal: Proposal, decision: Decision) -> str:
    """What the agent is told when a person did not allow ``proposal``."""
    if decision == "timeout":
        return f"{proposal.summary}: not done, nobody approved it in time"
    return f"{proposal.summary}: not done, the person denied it"
