"""The values a bridge turn is made of, shared by the backends, the bridge and the bot.

A turn reports what it does as ``Step``s (the progress message) and asks a
person before changing anything with a ``Proposal`` (the approval buttons);
both go through the ``TurnObserver`` the caller hands in, so the engine
knows nothing of chats.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

ActionKind = Literal["read", "edit", "write", "restart", "pause", "resume"]
Decision = Literal["once", "session", "deny", "timeout"]
Backend = Literal["builtin", "claude-code", "scripted"]


@dataclass(frozen=True, slots=True)
class Step:
    """One thing the agent did, as the progress message shows it: ``📖 read api.py``."""

    icon: str
    text: str

    def __str__(self) -> str:
        return f"{self.icon} {self.text}"


@dataclass(frozen=True, slots=True)
class Proposal:
    """A change to the world the agent wants to make; nothing happens without a tap.

    ``subject`` is what it acts on (a path relative to ``cwd``, or the workflow),
    ``diff`` the unified diff of an edit or write (empty for restart and the like).
    """

    workflow: str
    kind: ActionKind
    subject: str
    diff: str = ""

    @property
    def summary(self) -> str:
        return f"{self.kind} {self.subject}"


class TurnObserver(Protocol):
    """Who watches a turn: shows its steps, and answers its proposals."""

    async def step(self, step: Step) -> None: ...

    async def approve(self, proposal: Proposal) -> Decision:
        """A person's decision on ``proposal``; ``timeout`` when none came in time."""
        ...

    async def acted(self, proposal: Proposal, decision: Decision, outcome: str) -> None:
        """What came of ``proposal`` (``done``, ``not done``, ``failed: ...``): for the audit."""
        ...


@dataclass(frozen=True, slots=True)
class Workspace:
    """Where the agent works: the workflow's directory, and the literals it must never send."""

    workflow: str
    cwd: Path
    secrets: tuple[str, ...] = ()
    script: Path | None = None
    topic: int | None = None  # the forum topic whose messages are about this workflow


@dataclass(frozen=True, slots=True)
class TurnUsage:
    """What one turn cost."""

    model: str | None
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    seconds: float = 0.0


@dataclass(frozen=True, slots=True)
class TurnResult:
    """The answer of a turn (Markdown from the model) and what it cost.

    ``ended`` says why a turn ended without a full answer (stopped, time limit,
    cost cap, an API outage); the text then says what is known so far.
    """

    text: str
    usage: TurnUsage
    ended: str | None = None


@dataclass
class Session:
    """One conversation with the agent about one workflow, kept in the control DB.

    ``history`` is the whole conversation as Messages API params (the built-in
    backend sends all of it each turn); ``resume_id`` is Claude Code's own
    session id. ``allowed`` holds the action kinds a person allowed for the
    rest of this session.
    """

    id: str
    chat: str
    workflow: str
    backend: Backend
    history: list[dict[str, Any]] = field(default_factory=list)
    resume_id: str | None = None
    allowed: set[str] = field(default_factory=set)
    turns: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    created_at: float = 0.0
    updated_at: float = 0.0
    title: str = ""
