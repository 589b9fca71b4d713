"""Checked by code: the model's answer keeps only evidence that is really in the pack.

A model can misquote or invent a log line, and a log line can try to talk the
model into a cause; neither can make a quote appear in an item that does not
hold it. So every quote must be found, whitespace-normalised, in the item it
cites, or it is dropped; an answer with no quote left is inconclusive and the
rules' verdict stands, with the model's cause named as unconfirmed. Pure: no
clock, no I/O.

What it does not promise: a quote that is really there may still be read
wrongly (the check proves the line exists, not that it shows the cause).
"""

from __future__ import annotations

import dataclasses

from supervisor.diagnosis.types import Diagnosis, EvidencePack, Quote, Usage, Verdict

INCONCLUSIVE = "Claude's answer was inconclusive"


def check(diagnosis: Diagnosis, pack: EvidencePack) -> tuple[Diagnosis, int]:
    """``diagnosis`` keeping only quotes found in the items they cite; how many were dropped."""
    kept = [quote for quote in diagnosis.evidence if _found(quote, pack)]
    return diagnosis.model_copy(update={"evidence": kept}), len(diagnosis.evidence) - len(kept)


def verdict_from(checked: Diagnosis, dropped: int, rules_verdict: Verdict, usage: Usage) -> Verdict:
    """What a person sees from a checked answer: the model's, or the rules' when nothing held."""
    if not checked.evidence:
        return fallback(
            rules_verdict,
            f"{INCONCLUSIVE}: none of its {dropped} quotes is in the evidence, "
            f"so its cause is unconfirmed ({checked.cause}); the rules' verdict",
            usage,
        )
    return Verdict(
        workflow=rules_verdict.workflow,
        cause=checked.cause,
        category=checked.category,
        confidence=checked.confidence,
        evidence=tuple(checked.evidence),
        next_steps=tuple(checked.next_steps),
        restart_helps=checked.restart_helps,
        source="model",
        note=f"{dropped} quote(s) not found in the evidence were dropped" if dropped else None,
        usage=usage,
    )


def fallback(rules_verdict: Verdict, note: str, usage: Usage | None = None) -> Verdict:
    """The rules' verdict, saying why the model's is not there (and what trying cost)."""
    return dataclasses.replace(rules_verdict, note=note, usage=usage or Usage())


def _found(quote: Quote, pack: EvidencePack) -> bool:
    wanted = _normalised(quote.quote)
    return bool(wanted) and any(
        item.id == quote.evidence_id and wanted in _normalised(item.text) for item in pack.items
    )


def _normalised(text: str) -> str:
    return " ".join(text.split())
