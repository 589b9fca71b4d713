"""How a ``/why`` answer reads on a phone: the cause, its evidence, the next step.

The verdict comes from ``supervisor.diagnosis`` (the same for the chat, the
console and ``python -m supervisor why``); this module only renders it: about
900 characters, every dynamic string escaped, buttons for the next step, and
a footer saying who answered and what it cost. The whole evidence pack goes
out as a file on request.
"""

from __future__ import annotations

from bot.render import actions, tail_button
from bot.text import Button, Message, clip_html, esc, esc_clip
from supervisor.diagnosis.types import EvidencePack, Verdict

ANSWER_LIMIT = 900
CAUSE_CLIP = 300
QUOTE_CLIP = 120
STEP_CLIP = 120
QUOTES_SHOWN = 3
STEPS_SHOWN = 2
FIXABLE = frozenset({"bug", "config"})  # a diagnosis a code change may fix: heal's button


def looking_message(name: str) -> Message:
    """The first reply, at once; the answer edits it."""
    return Message(f"🔎 <b>{esc(name)}</b>: looking at its evidence…")


def verdict_message(verdict: Verdict) -> Message:
    """The answer: possible cause with a confidence word, quoted evidence, next step, footer."""
    name = esc(verdict.workflow)
    if verdict.category == "none":
        headline = f"🔎 <b>{name}</b>: nothing has failed"
    else:
        headline = (
            f"🔎 <b>{name}</b>: {esc(verdict.category)} ({esc(verdict.confidence)} confidence)"
        )
    lines = [headline, esc_clip(verdict.cause, CAUSE_CLIP)]
    if verdict.evidence:
        lines.append("<b>evidence</b>")
        lines += [
            f"• {esc_clip(quote.evidence_id, 40)}: <code>{esc_clip(quote.quote, QUOTE_CLIP)}</code>"
            for quote in verdict.evidence[:QUOTES_SHOWN]
        ]
    if verdict.next_steps:
        steps = " · ".join(esc_clip(step, STEP_CLIP) for step in verdict.next_steps[:STEPS_SHOWN])
        lines.append(f"<b>next</b>: {steps}")
    if verdict.note:
        lines.append(f"<i>{esc_clip(verdict.note, 200)}</i>")
    lines.append(f"<i>{esc(_footer(verdict))}</i>")
    return Message(clip_html("\n".join(lines), ANSWER_LIMIT), _buttons(verdict))


def _footer(verdict: Verdict) -> str:
    usage = verdict.usage
    if verdict.source == "rules" or usage.model is None:
        return f"rules, no model · {usage.seconds:.1f}s"
    tokens = f"{usage.input_tokens:,} in / {usage.output_tokens:,} out tokens"
    return f"{usage.model} · {tokens} · ${usage.cost_usd:.3f} · {usage.seconds:.1f}s"


def _buttons(verdict: Verdict) -> tuple[Button, ...]:
    """Restart when a restart would help; the log always; the whole evidence as a file."""
    name = verdict.workflow
    first = actions(name) if verdict.restart_helps else (tail_button(name),)
    fix = (Button("🩹 Propose fix", f"fix:{name}"),) if verdict.category in FIXABLE else ()
    return (*first, *fix, Button("Logs", f"logs:{name}"), Button("Evidence", f"evidence:{name}"))


def evidence_document(pack: EvidencePack) -> tuple[str, bytes]:
    """The whole pack as a text file: what the answer rests on, item by item."""
    parts = [f"Evidence for {pack.workflow} (signature {pack.signature})\n"]
    for item in pack.items:
        parts.append(f"\n=== {item.id} ({item.kind}) ===\n{item.text}\n")
    return f"{pack.workflow}-evidence.txt", "".join(parts).encode()
