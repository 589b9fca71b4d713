"""What the workflows' agents cost, in the chat: ``/cost``, the spend in ``/status``, and
the budget's alerts (a quiet note at 80%, a loud pause with [Resume once] [Raise ×2]).

The numbers are the supervisor's (``SpendSummary``, by local day); only the
words are made here.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, tzinfo

from bot.localtime import local_time
from bot.outbox import Alert
from bot.text import Button, Message, esc, pack
from supervisor.events import (
    BudgetPaused,
    BudgetResumed,
    BudgetWarning,
    OwnSpend,
    SpendSummary,
    WorkflowStatus,
)

OWN_AGENTS = "the bot's own agents (/why, the bridge, heal)"


def usd(amount: float) -> str:
    """``$1.23``; an amount under a cent keeps a digit more, so a small spend is not $0.00."""
    if amount == 0:
        return "$0"
    return f"${amount:.3f}" if amount < 0.01 else f"${amount:,.2f}"


def spend_fragment(spend: SpendSummary | None) -> str | None:
    """``💸 $1.23 today`` (``of $5.00`` with a budget) for a ``/status`` line; None: nothing
    spent and no budget, nothing worth a phone's width."""
    if spend is None or (spend.today_usd == 0 and spend.budget_usd is None):
        return None
    budget = f"/{usd(spend.budget_usd)}" if spend.budget_usd is not None else ""
    return f"💸 {usd(spend.today_usd)}{budget} today"


def spend_lines(spend: SpendSummary | None) -> list[str]:
    """``/status NAME``'s spend: today (and the budget), this run, the last 7 days."""
    if spend is None or (
        spend.run_usd is None and spend.week_usd == 0 and spend.budget_usd is None
    ):
        return []
    parts = [f"{usd(spend.today_usd)} today"]
    if spend.run_usd is not None:
        parts.append(f"{usd(spend.run_usd)} this run")
    parts.append(f"{usd(spend.week_usd)} in 7 days")
    lines = [f"spend: {' · '.join(parts)}"]
    if spend.budget_usd is not None:
        extra = ""
        if spend.allowance_usd is not None and spend.allowance_usd > spend.budget_usd:
            extra = f" ({usd(spend.allowance_usd)} allowed today)"
        lines.append(f"budget: {usd(spend.budget_usd)}/day{extra}")
    if spend.paused_by_budget:
        lines.append("⏸ paused by its budget until the day ends, or /resume it")
    return lines


def cost_messages(statuses: Sequence[WorkflowStatus], own: OwnSpend) -> list[Message]:
    """``/cost``: every workflow's spend, highest today first, then the bot's own line and
    the total; as many messages as a long fleet needs."""

    def spent(status: WorkflowStatus) -> SpendSummary:
        return status.spend or SpendSummary()

    ranked = sorted(
        statuses,
        key=lambda status: (-spent(status).today_usd, -spent(status).week_usd, status.name),
    )
    lines: list[str] = []
    for status in ranked:
        spend = spent(status)
        budget = f" · budget {usd(spend.budget_usd)}" if spend.budget_usd is not None else ""
        paused = " ⏸" if spend.paused_by_budget else ""
        lines.append(
            f"<b>{esc(status.name)}</b> {usd(spend.today_usd)} "
            f"({usd(spend.week_usd)}){budget}{paused}"
        )
    if not statuses:
        lines.append("no workflows configured")
    lines.append(f"{esc(OWN_AGENTS)}: {usd(own.today_usd)} of {usd(own.cap_usd)} a day")
    total = sum(spent(status).today_usd for status in statuses) + own.today_usd
    lines.append(f"<b>total today: {usd(total)}</b>")
    return pack(lines, header="<b>Spend today</b> (7 days)")


def budget_buttons(name: str) -> tuple[Button, ...]:
    return (Button("Resume once", f"budgetonce:{name}"), Button("Raise ×2", f"budgetraise:{name}"))


def budget_alert(event: BudgetWarning | BudgetPaused | BudgetResumed, tz: tzinfo) -> Alert:
    """The alert of a budget event; the pause's carries its two buttons."""
    name = f"<b>{esc(event.workflow)}</b>"
    match event:
        case BudgetWarning():
            text = (
                f"💸 {name} has spent {usd(event.spent_usd)} today, "
                f"{event.spent_usd / event.budget_usd:.0%} of its {usd(event.budget_usd)} budget"
            )
            return Alert(text)
        case BudgetPaused():
            until = local_time(event.resumes_at.timestamp(), tz, event.time.timestamp())
            text = (
                f"💸⏸ {name} paused: {usd(event.spent_usd)} spent today, its budget is "
                f"{usd(event.budget_usd)}/day. It resumes from its checkpoint at {until}, "
                f"or now: [Resume once] allows {usd(event.budget_usd)} more today, "
                f"[Raise ×2] makes the budget {usd(event.budget_usd * 2)}/day."
            )
            key = budget_key(event.workflow, event.time)
            return Alert(text, budget_buttons(event.workflow), key=key, mergeable=False)
        case BudgetResumed():
            how = {
                "once": f"resumed once by {esc(event.by or '?')}",
                "raised": f"budget raised to {usd(event.budget_usd)}/day by {esc(event.by or '?')}",
                "new_day": "resumed: a new budget day",
            }[event.how]
            text = f"💸▶️ {name} {how}; it may spend {usd(event.allowance_usd)} today"
            if event.paused_at is None:
                return Alert(text)
            return Alert(text, key=budget_key(event.workflow, event.paused_at), mergeable=False)


def budget_key(name: str, paused_at: datetime) -> str:
    """One pause's message, which its resume edits (the buttons go with it)."""
    return f"budget:{name}:{int(paused_at.timestamp())}"
