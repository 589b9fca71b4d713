"""Holding each workflow to its ``budget_usd_per_day``: spend counted, warned, paused, lifted.

The rule is ``supervisor.budget`` and the counting ``supervisor.spending``;
this is where they meet the workflows: an increase of a workflow's usage
is recorded, judged, and may pause it; a tap or a new budget day resumes it.
The supervisor lends the pause and the resume (``Hands``), which keep the
one state machine, and holds each workflow's lock around what needs it.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from supervisor import budget as rule
from supervisor.api import SupervisorError
from supervisor.control import BudgetMemory, Spent
from supervisor.days import next_midnight
from supervisor.events import (
    BudgetPaused,
    BudgetResume,
    BudgetResumed,
    BudgetWarning,
    Event,
    ProcessState,
    Resumed,
    SpendSummary,
)
from supervisor.runtime import Runtime
from supervisor.spending import Spending

log = logging.getLogger("supervisor")


@dataclass(frozen=True)
class Hands:
    """What the supervisor lends: its pause and resume (the caller holds the lock), its
    writer and publisher, its background tasks, and whether it is stopping."""

    pause: Callable[[Runtime, str], Awaitable[None]]
    resume: Callable[[Runtime, Resumed | BudgetResumed], Awaitable[None]]
    record: Callable[[Spent, Runtime], None]
    publish: Callable[[Event, Runtime], None]
    remember: Callable[[Runtime], None]
    background: Callable[[Coroutine[Any, Any, None]], None]
    stopping: Callable[[], bool]


class Budgets:
    """Every workflow's spend and budget, on the supervisor's event loop."""

    def __init__(self, spending: Spending, hands: Hands) -> None:
        self.spending = spending
        self._hands = hands

    def count(self, runtime: Runtime) -> None:
        """Record what the workflow's agents spent since the last reading; judge its budget."""
        usage = runtime.snapshot.usage
        if usage is None or usage == runtime.memory.usage_seen:
            return
        now = self.spending.now()
        spent = self.spending.count(runtime.name, runtime.memory, usage, now)
        if spent is None:
            self._hands.remember(runtime)  # a new run started from 0: nothing spent yet
            return
        self._hands.record(spent, runtime)
        budget = _budget(runtime)
        today = self.spending.today(runtime.name, now)
        verdict = rule.judge(today, budget, runtime.memory.budget, spent.day)
        if verdict == "warn" and budget is not None:
            warning = BudgetWarning(
                workflow=runtime.name, time=now, spent_usd=today, budget_usd=budget
            )
            self._hands.publish(warning, runtime)
        elif verdict == "pause" and _spending(runtime) and not self._hands.stopping():
            self._hands.background(self._pause(runtime))

    async def _pause(self, runtime: Runtime) -> None:
        async with runtime.lock:
            now = self.spending.now()
            memory, budget = runtime.memory.budget, _budget(runtime)
            if not _spending(runtime) or self._hands.stopping() or budget is None:
                return
            today = self.spending.today(runtime.name, now)
            allowed = rule.allowance(budget, memory, self.spending.day(now))
            if today < allowed:
                return  # a tap granted more meanwhile
            await self._hands.pause(runtime, "its budget for today is spent")
            memory.paused_on, memory.paused_at = self.spending.day(now), now.timestamp()
            paused = BudgetPaused(
                workflow=runtime.name,
                time=now,
                spent_usd=today,
                budget_usd=budget,
                allowance_usd=allowed,
                resumes_at=next_midnight(now, self.spending.zone),
            )
            self._hands.publish(paused, runtime)

    async def resume_once(self, runtime: Runtime, approver: str) -> None:
        """[Resume once] (the caller holds the lock): one more budget's worth today."""
        memory, budget = runtime.memory.budget, _budget(runtime)
        if budget is None:  # the budget was taken out of the TOML since: nothing to grant
            await self._hands.resume(
                runtime, Resumed(workflow=runtime.name, time=self.spending.now())
            )
            return
        rule.grant_once(budget, memory, self.spending.day(self.spending.now()))
        await self._hands.resume(runtime, self._resumed(runtime, "once", budget, approver))

    async def raise_twice(self, runtime: Runtime, approver: str) -> None:
        """[Raise ×2] (the caller holds the lock): double the budget in force, and resume
        the workflow if its budget had paused it."""
        configured, memory = runtime.workflow.config.budget_usd_per_day, runtime.memory.budget
        budget = rule.in_force(configured, memory)
        if configured is None or budget is None:
            raise SupervisorError(f"{runtime.name} has no budget_usd_per_day to raise")
        paused = paused_by_budget(runtime)
        rule.raise_twice(configured, budget, memory)
        raised = self._resumed(runtime, "raised", budget * 2, approver, ends_pause=paused)
        if paused:
            await self._hands.resume(runtime, raised)
        else:
            self._hands.publish(raised, runtime)

    async def new_day(self, runtimes: Iterable[Runtime]) -> None:
        """Resume the workflows their budget paused on a day that has ended."""
        day = self.spending.day(self.spending.now())
        for runtime in runtimes:
            paused_on = runtime.memory.budget.paused_on
            if paused_on is None or paused_on == day or self._hands.stopping():
                continue
            async with runtime.lock:
                memory = runtime.memory.budget
                if memory.paused_on is None:
                    continue
                if runtime.state != "paused":  # started by other means since
                    memory.paused_on = memory.paused_at = None
                    self._hands.remember(runtime)
                    continue
                rule.start_day(memory, day)
                resumed = self._resumed(runtime, "new_day", _budget(runtime) or 0.0, None)
                try:
                    await self._hands.resume(runtime, resumed)
                except SupervisorError as exc:
                    log.warning("%s: a new budget day, but %s", runtime.name, exc)

    def summary(self, runtime: Runtime) -> SpendSummary:
        """What ``/status`` says of its spend and budget."""
        now = self.spending.now()
        budget, usage, day = _budget(runtime), runtime.snapshot.usage, self.spending.day(now)
        allowed = None if budget is None else rule.allowance(budget, runtime.memory.budget, day)
        return SpendSummary(
            today_usd=self.spending.today(runtime.name, now),
            week_usd=self.spending.week(runtime.name, now),
            run_usd=None if usage is None else usage.cost_usd,
            budget_usd=budget,
            allowance_usd=allowed,
            paused_by_budget=paused_by_budget(runtime),
        )

    def _resumed(
        self,
        runtime: Runtime,
        how: BudgetResume,
        budget: float,
        by: str | None,
        *,
        ends_pause: bool = True,
    ) -> BudgetResumed:
        memory = runtime.memory.budget
        now = self.spending.now()
        return BudgetResumed(
            workflow=runtime.name,
            time=now,
            how=how,
            budget_usd=budget,
            allowance_usd=rule.allowance(budget, memory, self.spending.day(now)),
            paused_at=_paused_at(memory) if ends_pause else None,
            by=by,
        )


# Where a budget pause has something to stop: a process, or one about to be restarted. A
# workflow that finished, was stopped or was left down spends no more; pausing it would
# only make the new budget day start it again.
SPENDING_STATES: frozenset[ProcessState] = frozenset({"starting", "running", "hung", "backoff"})


def _spending(runtime: Runtime) -> bool:
    """Whether a pause has something to stop; a process that exited already (its last
    write was its spend) is left to its exit: finished stays finished."""
    process = runtime.process
    return runtime.state in SPENDING_STATES and not (process is not None and process.exited)


def paused_by_budget(runtime: Runtime) -> bool:
    return runtime.state == "paused" and runtime.memory.budget.paused_on is not None


def _budget(runtime: Runtime) -> float | None:
    return rule.in_force(runtime.workflow.config.budget_usd_per_day, runtime.memory.budget)


def _paused_at(memory: BudgetMemory) -> datetime | None:
    return None if memory.paused_at is None else datetime.fromtimestamp(memory.paused_at, UTC)
