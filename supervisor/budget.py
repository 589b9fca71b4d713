"""The rule of ``budget_usd_per_day``: a quiet warning at 80%, a pause at 100%.

The day is the local day (``supervisor.days``). [Resume once] lets a paused
workflow spend one more budget's worth that day (``granted_usd``); [Raise ×2]
doubles the budget in force from then on, until the TOML's value is changed
(a person editing the file has the last word). Pure functions over
``BudgetMemory``, which the supervisor persists with the workflow's memory,
so a pause, a grant and a raise all survive restarts.
"""

from __future__ import annotations

from typing import Literal

from supervisor.control import BudgetMemory

WARN_SHARE = 0.8
Verdict = Literal["warn", "pause"]


def in_force(configured: float | None, memory: BudgetMemory) -> float | None:
    """The budget that holds: the raised one while the TOML still says what it raised."""
    if configured is None:
        return None
    if memory.raised_usd is not None and memory.raised_from == configured:
        return memory.raised_usd
    return configured


def start_day(memory: BudgetMemory, day: str) -> None:
    """Forget the warning and the grants of an earlier day."""
    if memory.day != day:
        memory.day, memory.warned, memory.granted_usd = day, False, 0.0


def allowance(budget: float, memory: BudgetMemory, day: str) -> float:
    """What ``day`` may spend before a pause: the budget and that day's grants."""
    return budget + (memory.granted_usd if memory.day == day else 0.0)


def judge(spent: float, budget: float | None, memory: BudgetMemory, day: str) -> Verdict | None:
    """What today's ``spent`` calls for, marking the warning given (once a day)."""
    if budget is None:
        return None
    start_day(memory, day)
    if spent >= allowance(budget, memory, day):
        memory.warned = True  # a pause says more than the warning would
        return "pause"
    if not memory.warned and spent >= WARN_SHARE * budget:
        memory.warned = True
        return "warn"
    return None


def grant_once(budget: float, memory: BudgetMemory, day: str) -> None:
    """[Resume once]: one more budget's worth today."""
    start_day(memory, day)
    memory.granted_usd += budget


def raise_twice(configured: float, budget: float, memory: BudgetMemory) -> None:
    """[Raise ×2]: double the budget in force, kept while the TOML says ``configured``."""
    memory.raised_usd, memory.raised_from = budget * 2, configured
