"""The offline agent: no key, no network, real answers from the supervisor's own knowledge.

With no ``ANTHROPIC_API_KEY`` (``make run``, or ``AGENT_BACKEND=scripted``)
the bridge still works, so a newcomer sees a whole conversation: it looks at
the workflow's status, the tail of its log and ``/why``'s rules, reporting
each as a progress step, and says what it found. A message asking to restart,
pause or resume proposes that action and waits for the tap like the real
agent. It does not understand questions; it says so, and what a key adds.
"""

from __future__ import annotations

import re
import time

from supervisor.agent.runner import NotDone, TurnContext, with_approval
from supervisor.agent.steps import describe
from supervisor.agent.types import ActionKind, Proposal, TurnResult, TurnUsage
from supervisor.events import STATE_LABELS

TAIL_LINES = 5
_ACTION = re.compile(r"\b(restart|pause|resume)\b", re.IGNORECASE)


class ScriptedRunner:
    """A ``Runner`` that reads the supervisor's state instead of asking a model."""

    async def turn(self, text: str, context: TurnContext) -> TurnResult:
        started = time.monotonic()
        workflow, api, observer = context.workspace.workflow, context.api, context.observer
        await observer.step(describe("status", {}))
        [status] = await api.status(workflow)
        icon, word = STATE_LABELS[status.state]
        await observer.step(describe("tail", {"lines": TAIL_LINES}))
        lines = await api.tail(workflow, TAIL_LINES)
        await observer.step(describe("why", {}))
        verdict = await api.why(workflow)
        parts = [
            f"**{workflow}** is {icon} {word}" + (f": {status.summary}" if status.summary else "."),
            f"/why says: *{verdict.category}*: {verdict.cause}",
        ]
        if lines:
            parts.append("Its last lines:\n```\n" + "\n".join(lines) + "\n```")
        wanted = _ACTION.search(text)
        if wanted:
            parts.append(await self._act(context, wanted.group(1).lower()))  # type: ignore[arg-type]
        parts.append(
            "_I am the offline agent (no ANTHROPIC_API_KEY): I report what the supervisor "
            "knows but do not read your question. With a key, Claude answers it, reading "
            "the workflow's files and log._"
        )
        answer = context.redactor.redact("\n\n".join(parts))
        context.session.history += [
            {"role": "user", "content": text},
            {"role": "assistant", "content": answer},
        ]
        return TurnResult(answer, TurnUsage(None, seconds=time.monotonic() - started))

    async def _act(self, context: TurnContext, kind: ActionKind) -> str:
        workflow = context.workspace.workflow
        await context.observer.step(describe(kind, {}))
        act = {"restart": context.api.restart, "pause": context.api.pause}.get(
            kind, context.api.resume
        )
        try:
            await with_approval(context, Proposal(workflow, kind, workflow), lambda: act(workflow))
        except NotDone as exc:
            return f"{exc}."
        return f"Done: {kind} of {workflow}."
