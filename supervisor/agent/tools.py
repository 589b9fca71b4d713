"""The built-in agent's tools: the supervisor's knowledge, the workflow's files, gated changes.

Reading needs no tap (with ``AGENT_AUTO_APPROVE=read``, the default): status
and state, recent events, the log's tail (with a pattern), ``/why``'s
verdict, and the SDK's confined ``read``/``grep``/``glob`` over ``cwd``
behind the secrets rule (``supervisor.filetools``). Changing anything asks
first, in code, not in the prompt: ``edit`` and ``write`` are planned in
memory and shown as a diff (``supervisor.agent.changes``), ``restart``,
``pause`` and ``resume`` name what they will do; a refusal or no answer in
time is an error result the model reads. There is no shell tool.

Every tool reports a progress step before it runs, and every result is
redacted before the model sees it (the client redacts the request again).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from typing import Any

from anthropic import beta_async_tool
from anthropic.lib.tools import BetaAsyncFunctionTool, ToolError

from supervisor.agent.changes import ChangeRefused, FileChange, plan_edit, plan_write
from supervisor.agent.runner import NotDone, TurnContext, with_approval
from supervisor.agent.steps import describe
from supervisor.agent.types import ActionKind, Proposal
from supervisor.diagnosis.evidence import render_event
from supervisor.diagnosis.why import plain_text
from supervisor.events import STATE_LABELS
from supervisor.filetools import read_only_file_tools

TAIL_MAX = 500
TAIL_SCAN = 5000  # lines read to find pattern matches
EVENTS_MAX = 50

Tool = BetaAsyncFunctionTool[Any]


def bridge_tools(context: TurnContext) -> list[Tool]:
    """Every tool of the built-in backend, bound to one turn."""
    workflow = context.workspace.workflow
    api = context.api
    redact = context.redactor.redact

    async def step(name: str, arguments: dict[str, Any]) -> None:
        """A reading tool's progress step, and its tap with ``AGENT_AUTO_APPROVE=none``."""
        await context.observer.step(describe(name, arguments))
        if context.settings.agent_auto_approve == "none":
            subject = describe(name, arguments).text
            await _gate(context, Proposal(workflow, "read", subject))

    @beta_async_tool
    async def status() -> str:
        """The workflow's process state, what it says of itself, its last error and restarts."""
        await step("status", {})
        [found] = await api.status(workflow)
        icon, word = STATE_LABELS[found.state]
        lines = [
            f"{found.name}: {icon} {word}",
            f"pid: {found.pid or '-'}; restarts: {found.restarts}",
            f"workflow says: {found.status or '-'}; summary: {found.summary or '-'}",
            f"heartbeat: {found.heartbeat or '-'} ({_age(found.heartbeat_age)})",
            f"state database: {found.db_problem or 'readable'}",
            f"last error: {found.last_error or '-'}",
        ]
        return redact("\n".join(lines))

    @beta_async_tool
    async def events(limit: int = 20) -> str:
        """The workflow's recent events (starts, exits, hangs, restarts, errors), newest first."""
        await step("events", {})
        records = await api.recent_events(workflow, max(1, min(limit, EVENTS_MAX)))
        return redact("\n".join(render_event(record) for record in records) or "no events")

    @beta_async_tool
    async def tail(lines: int = 100, pattern: str | None = None) -> str:
        """The last lines of the workflow's log; with a regular expression, the last matching."""
        await step("tail", {"lines": lines, "pattern": pattern})
        count = max(1, min(lines, TAIL_MAX))
        if pattern is None:
            return redact("\n".join(await api.tail(workflow, count)) or "the log is empty")
        try:
            wanted = re.compile(pattern)
        except re.error as exc:
            raise ToolError(f"bad pattern: {exc}") from exc
        scanned = await api.tail(workflow, TAIL_SCAN)
        # Off the loop: a pattern from the model may take long (the bot keeps answering).
        matches = await asyncio.to_thread(lambda: [ln for ln in scanned if wanted.search(ln)])
        return redact("\n".join(matches[-count:]) or "no line matches")

    @beta_async_tool
    async def why() -> str:
        """The supervisor's diagnosis of the workflow's last failure (/why): cause, evidence."""
        await step("why", {})
        return redact(plain_text(await api.why(workflow)))

    @beta_async_tool
    async def edit(
        file_path: str, old_string: str, new_string: str, replace_all: bool = False
    ) -> str:
        """Replace text in a file under the workflow's directory by exact match; needs approval."""
        await context.observer.step(describe("edit", {"file_path": file_path}))
        return await _change(
            context,
            lambda: plan_edit(
                context.workspace.cwd, file_path, old_string, new_string, replace_all=replace_all
            ),
        )

    @beta_async_tool
    async def write(file_path: str, content: str) -> str:
        """Create or replace a whole file under the workflow's directory; needs approval."""
        await context.observer.step(describe("write", {"file_path": file_path}))
        return await _change(context, lambda: plan_write(context.workspace.cwd, file_path, content))

    files = read_only_file_tools(context.workspace.cwd, after=redact, before=step)
    controls = [
        _control(context, "restart", api.restart),
        _control(context, "pause", api.pause),
        _control(context, "resume", api.resume),
    ]
    return [status, events, tail, why, *files, edit, write, *controls]


def _control(context: TurnContext, kind: ActionKind, act: Callable[[str], Awaitable[Any]]) -> Tool:
    """``restart``, ``pause`` or ``resume`` of the session's workflow, once a person allows it."""
    workflow = context.workspace.workflow

    async def run() -> str:
        await context.observer.step(describe(kind, {}))
        try:
            return await with_approval(
                context, Proposal(workflow, kind, workflow), lambda: act(workflow)
            )
        except NotDone as exc:
            raise ToolError(str(exc)) from exc

    run.__name__ = kind
    run.__doc__ = f"{kind.capitalize()} the workflow; a person must approve it first."
    return beta_async_tool(run)


async def _gate(context: TurnContext, proposal: Proposal) -> None:
    """Go on only if the person allowed ``proposal`` (a read, with ``AGENT_AUTO_APPROVE=none``)."""
    try:
        await with_approval(context, proposal, _nothing)
    except NotDone as exc:
        raise ToolError(str(exc)) from exc


async def _nothing() -> None:
    """A read has nothing to do once allowed: the tool itself reads."""


async def _change(context: TurnContext, plan: Callable[[], FileChange]) -> str:
    """Plan a file change, ask for it, apply it; what the agent is told."""
    try:
        change = plan()
        proposal = change.proposal(context.workspace.workflow)
        await with_approval(context, proposal, lambda: asyncio.to_thread(change.apply))
    except ChangeRefused as exc:
        raise ToolError(str(exc)) from exc
    except NotDone as exc:
        raise ToolError(str(exc)) from exc
    added, removed = change.counts
    return f"{change.relative}: changed (+{added}/-{removed} lines)"


def _age(seconds: float | None) -> str:
    return "no heartbeat" if seconds is None else f"{seconds:.0f}s ago"
