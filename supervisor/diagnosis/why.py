"""``/why`` from end to end, for every caller: gather the evidence, the rules, then Claude.

The supervisor (for the bot and the console) and ``python -m supervisor
why`` (with no supervisor running) know a failure from different places, a
live runtime or the files; both hand over a ``Case`` and get the same
``Verdict``. ``plain_text`` is the terminal's rendering of it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter

from supervisor.config import ResolvedWorkflow
from supervisor.diagnosis.diagnose import Diagnoser
from supervisor.diagnosis.evidence import build_pack, render_event
from supervisor.diagnosis.rules import classify
from supervisor.diagnosis.tools import Sources
from supervisor.diagnosis.types import EvidencePack, Verdict
from supervisor.events import LIVE_STATES, STATE_LABELS, EventRecord, WorkflowStatus
from supervisor.secrets import Redactor

EVIDENCE_EVENTS = 20  # the recent events a diagnosis looks at
_VERDICT: TypeAdapter[Verdict] = TypeAdapter(Verdict)


@dataclass(frozen=True, slots=True)
class Case:
    """What is known of one workflow's failure: its config, state, recent events and log."""

    workflow: ResolvedWorkflow
    status: WorkflowStatus
    events: Sequence[EventRecord]  # newest first
    log_path: Path


async def gather(case: Case, redactor: Redactor) -> EvidencePack:
    """The evidence pack, built off the event loop (it reads files and runs git)."""
    return await asyncio.to_thread(
        build_pack,
        workflow=case.workflow,
        status=case.status,
        events=case.events,
        log_path=case.log_path,
        redactor=redactor,
    )


async def explain(case: Case, diagnoser: Diagnoser, redactor: Redactor) -> Verdict:
    """The verdict on ``case``: the rules' at least, Claude's (checked) when configured.

    A live workflow with no failure and no error gets no diagnosis (and costs nothing):
    there is nothing to explain yet.
    """
    pack = await gather(case, redactor)
    if pack.signature == "unknown" and _healthy(case.status):
        return _nothing_failed(case.status)
    lines = tuple(render_event(event) for event in case.events[::-1])
    sources = Sources(log_path=case.log_path, cwd=case.workflow.cwd, events=lines)
    secrets = case.workflow.secrets
    return await diagnoser.diagnose(pack, classify(pack), sources=sources, secrets=secrets)


def _healthy(status: WorkflowStatus) -> bool:
    return status.state in LIVE_STATES and status.state != "hung" and not status.last_error


def _nothing_failed(status: WorkflowStatus) -> Verdict:
    _icon, word = STATE_LABELS[status.state]
    return Verdict(
        workflow=status.name,
        cause=f"Nothing has failed: it is {word} and has recorded no error.",
        category="none",
        confidence="high",
        evidence=(),
        next_steps=("Ask again after a crash, a hang or an error",),
        restart_helps=None,
        source="rules",
    )


def verdict_json(verdict: Verdict) -> dict[str, Any]:
    """Every field of the verdict, JSON-ready (``why --json``)."""
    fields: dict[str, Any] = _VERDICT.dump_python(verdict, mode="json")
    return fields


def plain_text(verdict: Verdict) -> str:
    """The verdict for a terminal: cause, evidence, next steps, who answered."""
    lines = [
        f"{verdict.workflow}: {verdict.category} ({verdict.confidence} confidence)",
        f"cause: {verdict.cause}",
    ]
    lines += [f"  {quote.evidence_id}: {quote.quote}" for quote in verdict.evidence]
    lines += [f"next: {step}" for step in verdict.next_steps]
    if verdict.note:
        lines.append(f"note: {verdict.note}")
    usage = verdict.usage
    if usage.model:
        lines.append(
            f"{usage.model}: {usage.input_tokens} in / {usage.output_tokens} out tokens, "
            f"${usage.cost_usd:.3f}, {usage.seconds:.1f}s"
        )
    else:
        lines.append("answered by the rules, no model")
    return "\n".join(lines)
