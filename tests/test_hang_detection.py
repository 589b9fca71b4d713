"""S4: a live process with an old heartbeat is hung, killed and restarted; a new start has grace."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from supervisor.events import Hung, Restarted
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
from workflows.contract import HEARTBEAT_KEY

pytestmark = pytest.mark.timeout(15)


async def test_stalled_heartbeat_is_hung_killed_and_restarted(tmp_path: Path) -> None:
    conf = settings(tmp_path)
    flow = table(
        tmp_path,
        "stall",
        hang_threshold_seconds=0.5,
        restart_backoff_seconds=[0.1],
        plan={"beats": 3, "hang": True},
    )
    async with running(conf, resolve(tmp_path, conf, flow)) as (sup, sub):
        first = await wait_for_event(sub, "started", "stall")
        hung = await wait_for_event(sub, "hung", "stall")
        assert isinstance(hung, Hung)
        assert hung.will_restart
        assert hung.heartbeat_age is not None
        assert hung.heartbeat_age >= 0.5
        restarted = await wait_for_event(sub, "restarted", "stall")
        assert isinstance(restarted, Restarted)
        assert restarted.reason == "hang"
        assert restarted.attempt == 1
        assert restarted.incident == hung.incident
        assert live_group(first.pid) == []  # type: ignore[attr-defined]
        [status] = await sup.status("stall")
        assert status.pid == restarted.pid
        assert status.restarts == 1


async def test_no_heartbeat_at_all_is_hung_after_the_threshold(tmp_path: Path) -> None:
    conf = settings(tmp_path)
    flow = table(
        tmp_path, "mute", restart="never", hang_threshold_seconds=0.4, plan={"delay": 3600}
    )
    async with running(conf, resolve(tmp_path, conf, flow)) as (sup, sub):
        started = await wait_for_event(sub, "started", "mute")
        hung = await wait_for_event(sub, "hung", "mute")
        assert isinstance(hung, Hung)
        assert hung.heartbeat_age is None
        assert not hung.will_restart
        waited = (hung.time - started.time).total_seconds()
        assert 0.35 <= waited < 1.0
        await asyncio.sleep(0.3)
        [status] = await sup.status("mute")
        assert status.state == "crashed"
        assert status.pid is None


async def test_old_heartbeat_never_flags_a_fresh_start(tmp_path: Path) -> None:
    conf = settings(tmp_path)
    write_state(
        tmp_path / "late.db", HEARTBEAT_KEY, (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    )
    flow = table(tmp_path, "late", hang_threshold_seconds=3.0, plan={"delay": 0.4})
    async with running(conf, resolve(tmp_path, conf, flow)) as (sup, sub):
        events = await collect(sub, 1.5)
        assert [e.kind for e in events if e.workflow == "late"] == ["started", "status"]
        [status] = await sup.status("late")
        assert status.state == "running"


async def test_all_three_timestamp_forms_keep_a_workflow_alive(tmp_path: Path) -> None:
    conf = settings(tmp_path)
    flows = [
        table(tmp_path, form, hang_threshold_seconds=1.6, plan={"stamp": form, "every": 0.1})
        for form in ("js", "python", "sqlite")
    ]
    async with running(conf, resolve(tmp_path, conf, *flows)) as (sup, sub):
        events = await collect(sub, 2.2)
        assert not [e for e in events if e.kind == "hung"]
        for status in await sup.status():
            assert status.state == "running", status
            assert status.heartbeat is not None
            assert status.heartbeat_age is not None
            assert status.heartbeat_age < 1.2
            assert status.db_problem is None


async def test_hung_process_ignoring_sigterm_is_killed(tmp_path: Path) -> None:
    conf = settings(tmp_path, stop_grace_seconds=0.3)
    flow = table(
        tmp_path,
        "stubborn",
        restart="never",
        hang_threshold_seconds=0.3,
        plan={"beats": 2, "hang": True, "ignore_term": True},
    )
    async with running(conf, resolve(tmp_path, conf, flow)) as (sup, sub):
        started = await wait_for_event(sub, "started", "stubborn")
        await wait_for_event(sub, "hung", "stubborn")
        for _ in range(40):
            if (await sup.status("stubborn"))[0].pid is None:
                break
            await asyncio.sleep(0.05)
        assert live_group(started.pid) == []  # type: ignore[attr-defined]


async def test_killing_one_hung_workflow_does_not_delay_noticing_another(tmp_path: Path) -> None:
    conf = settings(tmp_path, stop_grace_seconds=1.5)
    plan = {"beats": 2, "hang": True, "ignore_term": True}
    flows = [
        table(tmp_path, name, restart="never", hang_threshold_seconds=0.3, plan=plan)
        for name in ("a", "b")
    ]
    async with running(conf, resolve(tmp_path, conf, *flows)) as (_sup, sub):
        first = await wait_for_event(sub, "hung")
        second = await wait_for_event(sub, "hung")
        assert {first.workflow, second.workflow} == {"a", "b"}
        assert (second.time - first.time).total_seconds() < 0.5
