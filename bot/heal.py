"""How heal reads on a phone: a proposal with its gates and diff, what was applied or undone.

A proposal: a headline (``🩹 Fix for api-builder: 1 file +6/−2 · checks ✅ ·
smoke ✅ · $0.04``), up to three lines of rationale, every gate with its
result, the first part of the diff in an expandable quote, and [Apply &
restart] [Reject] [Retry with a note] [📄 Patch] (the whole ``.patch`` as a
file). Apply edits the proposal's message (its buttons gone) and says so in
a quiet message with [Roll back], kept for 7 days; a rollback is loud.
"""

from __future__ import annotations

from bot.text import Button, Message, clip_html, esc, esc_clip
from supervisor.events import HealApplied, HealProposed, HealRolledBack

DIFF_SHOWN = 1800
RATIONALE_SHOWN = 3
LIMIT = 4000
CHECK_GATES = ("paths", "size", "tests", "state keys", "compiles", "check")


def proposal_key(proposal: str) -> str:
    """The outbox key of a proposal's message: Apply and Reject edit it."""
    return f"heal:{proposal}"


def _mark(passed: bool) -> str:
    return "✅" if passed else "❌"


def proposed_message(event: HealProposed) -> Message:
    """The proposal, ready or refused by a gate."""
    gates = {name: (passed, detail) for name, passed, detail in event.gates}
    checks = all(gates.get(name, (True, ""))[0] for name in CHECK_GATES)
    smoke = gates.get("smoke", (False, ""))[0]
    headline = (
        f"🩹 Fix for <b>{esc(event.workflow)}</b>: {event.files} file"
        f"{'s' if event.files != 1 else ''} +{event.added}/−{event.removed} · "
        f"checks {_mark(checks)} · smoke {_mark(smoke)} · ${event.cost_usd:.2f}"
    )
    lines = [headline]
    lines += [f"• {esc_clip(line, 200)}" for line in event.rationale[:RATIONALE_SHOWN]]
    lines.append(
        " · ".join(
            f"{_mark(passed)} {esc(name)}: {esc_clip(detail, 80)}"
            for name, passed, detail in event.gates
        )
    )
    diff = esc_clip(event.diff, DIFF_SHOWN)
    lines.append(
        f'<blockquote expandable><pre><code class="language-diff">{diff}</code></pre></blockquote>'
    )
    if event.applying:
        lines.append('<i>applying it by itself (heal = "auto"): every gate passed</i>')
    elif not event.ready:
        lines.append("<i>not applicable: a gate refused it</i>")
    return Message(clip_html("\n".join(lines), LIMIT), proposal_buttons(event))


def proposal_buttons(event: HealProposed) -> tuple[Button, ...]:
    patch = Button("📄 Patch", f"healpatch:{event.proposal}")
    retry = Button("Retry with a note", f"healretry:{event.workflow}")
    if event.applying:
        return (patch,)
    if not event.ready:
        return (retry, patch)
    return (
        Button("Apply & restart", f"healapply:{event.proposal}"),
        Button("Reject", f"healreject:{event.proposal}"),
        retry,
        patch,
    )


def applied_message(event: HealApplied) -> Message:
    """The fix is live: which commit, who approved, how long probation lasts."""
    minutes = round(event.probation_seconds / 60)
    commit, previous = esc(event.commit[:10]), esc(event.previous[:10])
    text = (
        f"🩹 <b>{esc(event.workflow)}</b>: fix applied as <code>{commit}</code> by "
        f"{esc_clip(event.approver, 100)}, restarted; on probation for {minutes} min: if the same "
        f"failure comes back it is rolled back by itself (was <code>{previous}</code>)"
    )
    return Message(text, (Button("Roll back", f"healrollback:{event.proposal}"),))


def rolled_back_message(event: HealRolledBack) -> Message:
    text = (
        f"↩️ <b>{esc(event.workflow)}</b>: fix {esc(event.proposal)} ROLLED BACK "
        f"(<code>{esc(event.commit[:10])}</code>): {esc_clip(event.reason, 500)}; restarted"
    )
    return Message(text)
