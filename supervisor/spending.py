"""Each workflow's ``agent.*`` usage keys turned into spend per local day.

The keys are cumulative for a run, so what was spent is the increase since
the value last counted (``Memory.usage_seen``, saved with each increase in one
transaction: a kill in between neither loses nor doubles one); a value that
went down is a new run, counted whole. The week's totals per day are kept in
memory (loaded at start), so ``/status`` costs no query.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime, tzinfo

from sqlalchemy import Engine, func, select

from supervisor.control import ControlDB, Memory, Spent, spend
from supervisor.days import day_of, days_before
from workflows.usage import Usage

WEEK_DAYS = 7


def increase(seen: Usage, now: Usage) -> Usage:
    """What was used between two readings of a run's cumulative usage."""
    if (
        now.cost_usd < seen.cost_usd
        or now.input_tokens < seen.input_tokens
        or now.output_tokens < seen.output_tokens
    ):
        return now  # a new run began: it started from 0
    return Usage(
        now.input_tokens - seen.input_tokens,
        now.output_tokens - seen.output_tokens,
        now.cost_usd - seen.cost_usd,
    )


class Spending:
    """Today's and the week's spend of every workflow; fed by the supervisor's loop."""

    def __init__(self, zone: tzinfo, clock: Callable[[], datetime]) -> None:
        """``clock``: the time budgets and days go by (a test's may jump to tomorrow)."""
        self.zone = zone
        self.now = clock
        self._days: dict[str, dict[str, float]] = {}  # workflow -> local day -> USD

    def load(self, control: ControlDB, now: datetime) -> None:
        """Read the week from the control DB (blocking: run it in a thread)."""
        self._days = control.spend_by_day(days_before(self.day(now), WEEK_DAYS - 1))

    def day(self, now: datetime) -> str:
        return day_of(now, self.zone)

    def count(self, name: str, memory: Memory, usage: Usage, now: datetime) -> Spent | None:
        """Count ``usage`` read now against what ``memory`` had counted (which it then
        holds); the increase to record, or None when nothing was spent."""
        spent = increase(memory.usage_seen, usage)
        memory.usage_seen = usage
        if spent == Usage():
            return None
        day = self.day(now)
        days = self._days.setdefault(name, {})
        days[day] = days.get(day, 0.0) + spent.cost_usd
        oldest = days_before(day, WEEK_DAYS - 1)
        for gone in [each for each in days if each < oldest]:
            del days[gone]
        return Spent(name, now, day, spent)

    def today(self, name: str, now: datetime) -> float:
        return self._days.get(name, {}).get(self.day(now), 0.0)

    def week(self, name: str, now: datetime) -> float:
        oldest = days_before(self.day(now), WEEK_DAYS - 1)
        days: Mapping[str, float] = self._days.get(name, {})
        return sum(usd for day, usd in days.items() if day >= oldest)


def totals(engine: Engine) -> dict[str, Usage]:
    """Every workflow's usage over all the days kept (``acp_agent_*``; blocking)."""
    query = select(
        spend.c.workflow,
        func.sum(spend.c.input_tokens),
        func.sum(spend.c.output_tokens),
        func.sum(spend.c.cost_usd),
    ).group_by(spend.c.workflow)
    with engine.connect() as conn:
        return {
            workflow: Usage(int(tokens_in), int(tokens_out), float(usd))
            for workflow, tokens_in, tokens_out, usd in conn.execute(query)
        }
