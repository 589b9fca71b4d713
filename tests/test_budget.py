"""K1–K4: a workflow's ``agent.*`` usage becomes spend per local day, counted once across
runs and restarts; ``budget_usd_per_day`` warns at 80%, pauses at 100% (kept across
restarts, lifted when the day ends), and [Resume once] / [Raise ×2] lift it early."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from supervisor import budget
from supervisor.agentsettings import AgentSettings
from supervisor.api import SupervisorAPI, SupervisorError
from supervisor.control import BudgetMemory
from supervisor.events import SpendSummary, WorkflowStatus
from supervisor.fleet import commands
from supervisor.fleet.registry import decode_status, encode_status
from supervisor.spending import increase
from tests.supervisor_harness import (
    collect,
    live_group,
    resolve,
    running,
    settings,
    table,
    wait_for_event,
    write_state,
)
from workflows.contract import COST_KEY, INPUT_TOKENS_KEY, OUTPUT_TOKENS_KEY
from workflows.usage import Usage

pytestmark = pytest.mark.timeout(40)
# 23:00 in Berlin: the budget day ends in an hour there, while UTC's is still young.
LATE_EVENING = datetime(2026, 12, 3, 22, 0, tzinfo=UTC)


class Clock:
    """The time budgets go by, moved by the test."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def test_an_increase_is_what_was_spent_and_a_decrease_is_a_new_run() -> None:
    assert increase(Usage(100, 10, 0.5), Usage(300, 30, 0.75)) == Usage(200, 20, 0.25)
    assert increase(Usage(100, 10, 0.5), Usage(40, 4, 0.2)) == Usage(40, 4, 0.2)
    assert increase(Usage(100, 10, 0.5), Usage(100, 10, 0.5)) == Usage()


def test_the_rule_warns_once_pauses_at_the_allowance_and_forgets_at_midnight() -> None:
    memory = BudgetMemory()
    assert budget.judge(3.9, 5.0, memory, "2026-12-03") is None
    assert budget.judge(4.0, 5.0, memory, "2026-12-03") == "warn"
    assert budget.judge(4.5, 5.0, memory, "2026-12-03") is None  # once a day
    assert budget.judge(5.0, 5.0, memory, "2026-12-03") == "pause"
    budget.grant_once(5.0, memory, "2026-12-03")
    assert budget.allowance(5.0, memory, "2026-12-03") == 10.0
    assert budget.judge(9.9, 5.0, memory, "2026-12-03") is None
    assert budget.judge(10.0, 5.0, memory, "2026-12-03") == "pause"
    assert budget.judge(4.2, 5.0, memory, "2026-12-04") == "warn"  # a new day: all again
    assert budget.allowance(5.0, memory, "2026-12-04") == 5.0
    assert budget.judge(1.0, None, memory, "2026-12-04") is None  # no budget, no rule


def test_a_raise_holds_until_the_toml_says_something_else() -> None:
    memory = BudgetMemory()
    budget.raise_twice(5.0, 5.0, memory)
    assert budget.in_force(5.0, memory) == 10.0
    budget.raise_twice(5.0, 10.0, memory)
    assert budget.in_force(5.0, memory) == 20.0
    assert budget.in_force(8.0, memory) == 8.0  # the file was edited: it wins
    assert budget.in_force(None, memory) is None


def _spend(statuses: list[WorkflowStatus]) -> SpendSummary:
    [status] = statuses
    assert status.spend is not None
    return status.spend


async def _until_spent(sup: SupervisorAPI, name: str, usd: float, within: float = 30) -> None:
    """Wait until ``name`` has spent ``usd`` today (the supervisor reads the write soon)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while abs((spend := _spend(await sup.status(name))).today_usd - usd) > 1e-9:
        if loop.time() > deadline:
            raise AssertionError(f"{name} spent {spend}, not {usd} today")
        await asyncio.sleep(0.02)


async def test_spend_is_counted_once_across_runs_and_supervisor_restarts(tmp_path: Path) -> None:
    conf = settings(tmp_path)
    flows = resolve(tmp_path, conf, table(tmp_path, "w"))
    db = tmp_path / "w.db"
    async with running(conf, flows) as (sup, sub):
        await wait_for_event(sub, "started", "w", timeout=20)
        write_state(db, INPUT_TOKENS_KEY, "1000")
        write_state(db, OUTPUT_TOKENS_KEY, "200")
        write_state(db, COST_KEY, "0.5")
        await _until_spent(sup, "w", 0.5)
        write_state(db, COST_KEY, "0.75")
        await _until_spent(sup, "w", 0.75)
        write_state(db, COST_KEY, "0.2")  # lower: a new run, which spent 0.2 so far
        await _until_spent(sup, "w", 0.95)
        assert _spend(await sup.status("w")).run_usd == 0.2
        write_state(db, COST_KEY, "not a number")  # nonsense is no spend, and no crash
        write_state(db, COST_KEY, "0.3")
        await _until_spent(sup, "w", 1.05)
    async with running(conf, flows) as (sup, sub):  # the same run's total read again
        await wait_for_event(sub, "started", "w", timeout=20)
        spend = _spend(await sup.status("w"))
        assert spend.today_usd == pytest.approx(1.05)
        assert spend.week_usd == pytest.approx(1.05)


async def test_a_database_with_spend_already_in_it_is_history(tmp_path: Path) -> None:
    db = tmp_path / "old.db"
    write_state(db, COST_KEY, "12.5")  # spent before this supervisor ever saw it
    conf = settings(tmp_path)
    flows = resolve(tmp_path, conf, table(tmp_path, "old"))
    async with running(conf, flows) as (sup, sub):
        await wait_for_event(sub, "started", "old", timeout=20)
        spend = _spend(await sup.status("old"))
        assert (spend.today_usd, spend.run_usd) == (0.0, 12.5)


async def test_a_budget_warns_pauses_survives_a_restart_and_a_new_day_resumes(
    tmp_path: Path,
) -> None:
    clock = Clock(LATE_EVENING)
    conf = settings(tmp_path)
    berlin = AgentSettings(_env_file=None, anthropic_api_key=None, alert_timezone="Europe/Berlin")
    flows = resolve(tmp_path, conf, table(tmp_path, "w", budget_usd_per_day=1.0))
    db = tmp_path / "w.db"
    async with running(conf, flows, clock=clock, agent=berlin) as (sup, sub):
        started = await wait_for_event(sub, "started", "w", timeout=20)
        write_state(db, COST_KEY, "0.85")
        warning = await wait_for_event(sub, "budget_warning", "w", timeout=20)
        assert warning.spent_usd == pytest.approx(0.85)  # type: ignore[attr-defined]
        write_state(db, COST_KEY, "1.10")
        paused = await wait_for_event(sub, "budget_paused", "w", timeout=20)
        # Midnight in Berlin, an hour after 23:00 there.
        assert paused.resumes_at == LATE_EVENING + timedelta(hours=1)  # type: ignore[attr-defined]
        status = (await sup.status("w"))[0]
        assert status.state == "paused"
        assert _spend([status]).paused_by_budget
        assert live_group(started.pid) == []  # type: ignore[attr-defined]
        with pytest.raises(SupervisorError, match="already paused"):
            await sup.pause("w")
    async with running(conf, flows, clock=clock, agent=berlin) as (sup, sub):
        status = (await sup.status("w"))[0]
        assert status.state == "paused"  # kept across the restart, still that day
        assert _spend([status]).paused_by_budget
        clock.now = LATE_EVENING + timedelta(hours=1, seconds=1)  # the next day in Berlin
        resumed = await wait_for_event(sub, "budget_resumed", "w", timeout=15)
        assert resumed.how == "new_day"  # type: ignore[attr-defined]
        await wait_for_event(sub, "started", "w", timeout=20)
        spend = _spend(await sup.status("w"))
        assert spend.today_usd == 0.0
        assert spend.week_usd == pytest.approx(1.10)


async def test_resume_once_allows_one_budget_more_and_raise_doubles_it(tmp_path: Path) -> None:
    clock = Clock(LATE_EVENING)
    conf = settings(tmp_path)
    flows = resolve(tmp_path, conf, table(tmp_path, "w", budget_usd_per_day=1.0))
    db = tmp_path / "w.db"
    async with running(conf, flows, clock=clock) as (sup, sub):
        await wait_for_event(sub, "started", "w", timeout=20)
        with pytest.raises(SupervisorError, match="not paused"):
            await sup.budget_resume("w", "ann")
        write_state(db, COST_KEY, "1.0")
        await wait_for_event(sub, "budget_paused", "w", timeout=20)
        status = await sup.budget_resume("w", "ann")
        assert _spend([status]).allowance_usd == 2.0
        resumed = await wait_for_event(sub, "budget_resumed", "w", timeout=20)
        assert (resumed.how, resumed.by) == ("once", "ann")  # type: ignore[attr-defined]
        assert resumed.paused_at is not None  # type: ignore[attr-defined]
        await wait_for_event(sub, "started", "w", timeout=20)
        write_state(db, COST_KEY, "1.9")
        write_state(db, COST_KEY, "2.0")  # the second budget's worth: paused again
        await wait_for_event(sub, "budget_paused", "w", timeout=20)
        status = await sup.budget_raise("w", "bob")
        assert _spend([status]).budget_usd == 2.0
        raised = await wait_for_event(sub, "budget_resumed", "w", timeout=20)
        assert (raised.how, raised.by) == ("raised", "bob")  # type: ignore[attr-defined]
        assert (await sup.status("w"))[0].state in ("starting", "running")


async def test_a_workflow_without_a_budget_cannot_be_raised(tmp_path: Path) -> None:
    conf = settings(tmp_path)
    flows = resolve(tmp_path, conf, table(tmp_path, "free"))
    async with running(conf, flows) as (sup, sub):
        await wait_for_event(sub, "started", "free", timeout=20)
        with pytest.raises(SupervisorError, match="no budget_usd_per_day"):
            await sup.budget_raise("free", "ann")


async def test_a_budget_tap_and_the_spend_travel_whole_between_fleet_nodes() -> None:
    """A tap on another node's workflow is a command its node runs (supervisor.fleet)."""
    status = WorkflowStatus(
        name="w",
        state="starting",
        spend=SpendSummary(1.0, 3.5, 1.0, 1.0, 2.0, paused_by_budget=False),
    )
    calls: list[tuple[str, str, str]] = []

    class Node:
        async def budget_resume(self, name: str, approver: str) -> WorkflowStatus:
            calls.append(("budget_resume", name, approver))
            return status

        async def budget_raise(self, name: str, approver: str) -> WorkflowStatus:
            calls.append(("budget_raise", name, approver))
            return status

    for verb in ("budget_resume", "budget_raise"):
        claimed = commands.Claimed(1, verb, {"name": "w", "approver": "ann"})
        state, result = await commands.execute(Node(), claimed)  # type: ignore[arg-type]
        assert commands.answer(verb, state, result, "node-b") == status
    assert calls == [("budget_resume", "w", "ann"), ("budget_raise", "w", "ann")]
    assert decode_status(encode_status(status)) == status  # what /status of the fleet shows


async def test_a_workflow_that_finished_past_its_budget_is_not_paused(tmp_path: Path) -> None:
    """Nothing left to stop: a pause would only make the next budget day start it again."""
    conf = settings(tmp_path)
    flows = resolve(tmp_path, conf, table(tmp_path, "w", budget_usd_per_day=1.0, plan={"beats": 2}))
    async with running(conf, flows) as (sup, sub):
        await wait_for_event(sub, "finished", "w", timeout=20)
        # Its last word, read after its exit. (Written as the exiting process's checkpoint
        # lands, in the same clock tick and size, a write can look like none: written again.)
        for _ in range(3):
            write_state(tmp_path / "w.db", COST_KEY, "2.5")
            with contextlib.suppress(AssertionError):
                await _until_spent(sup, "w", 2.5, within=5)
                break
        await _until_spent(sup, "w", 2.5)
        later = await collect(sub, 0.3)
        assert "budget_paused" not in [event.kind for event in later]
        status = (await sup.status("w"))[0]
        assert status.state == "finished"
        assert not _spend([status]).paused_by_budget
