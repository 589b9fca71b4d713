"""One rule for spend: what a call to Claude cost, and whether today's budget allows another.

The cost comes from the usage the API reports and a price list (built in,
overridden by ``AGENT_PRICES``). Every call is written to a ledger in the
control DB, so the daily cap ``AGENT_MAX_USD_PER_DAY`` holds across restarts
and, on Postgres, across hosts. The ``who`` column names the spender
(``diagnosis``, ``bridge``, ``heal``); a workflow's own agents are counted
apart (``supervisor.spending``), against their ``budget_usd_per_day``.

What it does not promise: the cap is checked against an estimate before a
call and the real cost is recorded after it, so concurrent calls, or a call
that costs more than its estimate, can overshoot the cap by what those calls
cost. The day is the local one (from midnight in ``ALERT_TIMEZONE``), as for
the workflows' budgets (``supervisor.budget``); a change of zone moves where
later days begin.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from typing import Any

from sqlalchemy import Column, Engine, Float, Integer, MetaData, String, func, insert, select
from sqlalchemy import Table as SATable

from supervisor.days import day_of
from supervisor.dbengine import create_tables
from workflows.prices import Price, cost_usd

metadata = MetaData()

ledger = SATable(
    "agent_spend",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("day", String(10), nullable=False, index=True),  # local date (ALERT_TIMEZONE)
    Column("at", Float, nullable=False),  # epoch seconds, like the outbox
    Column("who", String(64), nullable=False),
    Column("model", String(255), nullable=False),
    Column("input_tokens", Integer, nullable=False),
    Column("output_tokens", Integer, nullable=False),
    Column("cost_usd", Float, nullable=False),
)


@dataclass
class Tally:
    """Tokens the API reported so far in one conversation."""

    input_tokens: int = 0
    output_tokens: int = 0

    def add(self, message: Any) -> None:
        """Count a reply's ``usage`` (anything with ``input_tokens`` and ``output_tokens``)."""
        self.input_tokens += message.usage.input_tokens
        self.output_tokens += message.usage.output_tokens


class CapReached(Exception):
    """The next round would take a conversation past its cost cap; it is not sent."""


@dataclass(frozen=True)
class Budget:
    """The cost cap of one conversation (a diagnosis, a bridge turn), checked before each round.

    ``spent_before`` is what came before this conversation and counts against
    the same cap (a bridge session's earlier turns). ``max_output`` is the
    output a round may use, counted in full in the estimate.
    """

    price: Price
    cap_usd: float
    max_output: int
    tally: Tally = field(default_factory=Tally)
    spent_before: float = 0.0

    def spent(self) -> float:
        """USD spent in this conversation so far (without ``spent_before``)."""
        return cost_usd(self.price, self.tally.input_tokens, self.tally.output_tokens)

    def check(self, input_tokens: int) -> None:
        """Raise ``CapReached`` unless a round of ``input_tokens`` in (and up to
        ``max_output`` out) still fits under the cap."""
        next_round = cost_usd(self.price, input_tokens, self.max_output)
        if self.spent_before + self.spent() + next_round > self.cap_usd:
            raise CapReached


class SpendLedger:
    """Today's spend on Claude, kept in the control DB; blocking calls (run them off the loop)."""

    def __init__(
        self,
        engine: Engine,
        *,
        cap_usd: float,
        clock: Callable[[], float] = time.time,
        zone: tzinfo = UTC,
    ) -> None:
        """``zone``: where a day of the cap begins (``AgentSettings.zone``)."""
        self.engine = engine
        self.cap_usd = cap_usd
        self.clock = clock
        self.zone = zone
        create_tables(engine, metadata)

    def spent_today(self) -> float:
        """USD recorded so far on the current local day, by everyone."""
        with self.engine.connect() as conn:
            total = conn.execute(
                select(func.coalesce(func.sum(ledger.c.cost_usd), 0.0)).where(
                    ledger.c.day == self._day(self.clock())
                )
            ).scalar_one()
        return float(total)

    def allowed(self, estimate: float) -> bool:
        """Whether a call expected to cost ``estimate`` USD stays within today's cap."""
        return self.spent_today() + estimate <= self.cap_usd

    def record(
        self,
        model: str,
        input_tokens: int,
        output_tokens: int,
        cost: float,
        *,
        who: str = "diagnosis",
    ) -> None:
        """Add one call (or one conversation) to today's ledger."""
        now = self.clock()
        with self.engine.begin() as conn:
            conn.execute(
                insert(ledger).values(
                    day=self._day(now),
                    at=now,
                    who=who,
                    model=model,
                    input_tokens=input_tokens,
                    output_tokens=output_tokens,
                    cost_usd=cost,
                )
            )

    def _day(self, epoch: float) -> str:
        return day_of(datetime.fromtimestamp(epoch, UTC), self.zone)
