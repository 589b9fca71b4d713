"""S5: restarts follow the policy and the backoff schedule, and stop at a give-up."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

from supervisor.api import SupervisorError
from supervisor.events import Crashed, GaveUp, Recovered, Restarted
from supervisor.policy import Decision, backoff_delay, decide
from tests.supervisor_harness import collect, resolve, running, settings, table, wait_for_event

pytestmark = pytest.mark.timeout(15)

SCHEDULE = (5.0, 30.0, 120.0)

# -- the pure policy ----------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "cause", "action"),
    [
        ("on-failure", "crash", "restart"),
        ("on-failure", "hang", "restart"),
        ("on-failure", "finished", "leave"),
        ("always", "crash", "restart"),
        ("always", "hang", "restart"),
        ("always", "finished", "restart"),
        ("never", "crash", "leave"),
        ("never", "hang", "leave"),
        ("never", "finished", "leave"),
    ],
)
def test_decide_follows_the_restart_mode(mode: str, cause: str, action: str) -> None:
    decision = decide(
        mode=mode,  # type: ignore[arg-type]
        cause=cause,  # type: ignore[arg-type]
        restarts=0,
        max_restarts=3,
        schedule=SCHEDULE,
    )
    assert decision.action == action


@pytest.mark.parametrize(
    ("restarts", "attempt", "delay"), [(0, 1, 5.0), (1, 2, 30.0), (2, 3, 120.0), (5, 6, 120.0)]
)
def test_decide_walks_the_backoff_schedule_and_repeats_the_last(
    restarts: int, attempt: int, delay: float
) -> None:
    decision = decide(
        mode="on-failure", cause="crash", restarts=restarts, max_restarts=10, schedule=SCHEDULE
    )
    assert decision == Decision("restart", attempt=attempt, delay=delay)


def test_decide_gives_up_after_max_attempts() -> None:
    assert decide(
        mode="always", cause="hang", restarts=3, max_restarts=3, schedule=SCHEDULE
    ) == Decision("give_up")
    assert decide(
        mode="on-failure", cause="crash", restarts=0, max_restarts=0, schedule=SCHEDULE
    ) == Decision("give_up")


def test_decide_leaves_a_clean_exit_alone_even_past_the_limit() -> None:
    decision = decide(
        mode="on-failure", cause="finished", restarts=99, max_restarts=3, schedule=SCHEDULE
    )
    assert decision == Decision("leave")


def test_backoff_delay_is_one_based() -> None:
    assert [backoff_delay([1, 2], n) for n in (1, 2, 3, 4)] == [1.0, 2.0, 2.0, 2.0]


# -- the policy applied to real processes -----------------------------------------


async def test_crashes_follow_the_schedule_then_give_up_and_wait(tmp_path: Path) -> None:
    conf = settings(tmp_path)
    flow = table(
        tmp_path,
        "flaky",
        restart_backoff_seconds=[0.1, 0.3],
        max_restart_attempts=3,
        plan={"beats": 0, "exit": 2},  # no heartbeat: never recovers
    )
    async with running(conf, resolve(tmp_path, conf, flow)) as (sup, sub):
        crashes: list[Crashed] = []
        for expected_attempt in (1, 2, 3):
            crash = await wait_for_event(sub, "crashed", "flaky")
            assert isinstance(crash, Crashed)
            crashes.append(crash)
            restarted = await wait_for_event(sub, "restarted", "flaky")
            assert isinstance(restarted, Restarted)
            assert restarted.reason == "crash"
            assert restarted.attempt == expected_attempt
            waited = (restarted.time - crash.time).total_seconds()
            assert waited >= (crash.next_restart_in or 0) - 0.01
        assert [c.next_restart_in for c in crashes] == [0.1, 0.3, 0.3]
        assert len({c.incident for c in crashes}) == 1
        last = await wait_for_event(sub, "crashed", "flaky")
        assert isinstance(last, Crashed)
        assert not last.will_restart
        gave_up = await wait_for_event(sub, "gave_up", "flaky")
        assert isinstance(gave_up, GaveUp)
        assert gave_up.attempts == 3
        assert gave_up.incident == crashes[0].incident
        assert gave_up.last_detail == "exit code 2"
        assert not [e for e in await collect(sub, 0.5) if e.kind in ("started", "restarted")]
        [status] = await sup.status("flaky")
        assert status.state == "gave_up"
        status = await sup.start("flaky")
        assert status.restarts == 0
        assert status.pid is not None


async def test_always_restarts_after_a_clean_exit(tmp_path: Path) -> None:
    conf = settings(tmp_path)
    flow = table(
        tmp_path, "loop", restart="always", restart_backoff_seconds=[0.1], plan={"beats": 1}
    )
    async with running(conf, resolve(tmp_path, conf, flow)) as (_sup, sub):
        await wait_for_event(sub, "finished", "loop")
        restarted = await wait_for_event(sub, "restarted", "loop")
        assert isinstance(restarted, Restarted)
        assert restarted.reason == "exit"


async def test_attempts_reset_after_a_healthy_stretch(tmp_path: Path) -> None:
    conf = settings(tmp_path, healthy_reset_seconds=0.3)
    # Crashes on its first run only: the second run finds the marker file and keeps going.
    marker = tmp_path / "ran-once"
    flow = {
        "name": "heals",
        "command": [
            "sh",
            "-c",
            f'if [ -e {marker} ]; then exec "$0" "$@"; else touch {marker}; exit 5; fi',
            *table(tmp_path, "x", plan={"every": 0.05})["command"],
        ],
        "restart_backoff_seconds": [0.1],
    }
    async with running(conf, resolve(tmp_path, conf, flow)) as (sup, sub):
        crash = await wait_for_event(sub, "crashed", "heals")
        recovered = await wait_for_event(sub, "recovered", "heals")
        assert isinstance(recovered, Recovered)
        assert recovered.incident == crash.incident  # type: ignore[attr-defined]
        assert (await sup.status("heals"))[0].restarts == 1
        for _ in range(20):
            await asyncio.sleep(0.1)
            if (await sup.status("heals"))[0].restarts == 0:
                break
        assert (await sup.status("heals"))[0].restarts == 0


async def test_manual_restart_resets_attempts(tmp_path: Path) -> None:
    conf = settings(tmp_path)
    flow = table(tmp_path, "again", restart_backoff_seconds=[0.1], plan={"beats": 2, "exit": 1})
    async with running(conf, resolve(tmp_path, conf, flow)) as (sup, sub):
        await wait_for_event(sub, "restarted", "again")
        assert (await sup.status("again"))[0].restarts == 1
        status = await sup.restart("again")
        assert status.restarts == 0
        manual = await wait_for_event(sub, "restarted", "again")
        assert isinstance(manual, Restarted)
        assert manual.reason == "manual"
        assert manual.incident is None


async def test_manual_commands_refuse_what_makes_no_sense(tmp_path: Path) -> None:
    conf = settings(tmp_path)
    flow = table(tmp_path, "one")
    async with running(conf, resolve(tmp_path, conf, flow)) as (sup, sub):
        await wait_for_event(sub, "started", "one")
        with pytest.raises(SupervisorError, match="already running"):
            await sup.start("one")
        await sup.stop("one")
        with pytest.raises(SupervisorError, match="not running"):
            await sup.stop("one")
        with pytest.raises(SupervisorError, match="unknown workflow 'two'"):
            await sup.start("two")


async def test_a_crash_loop_stays_one_incident_until_it_runs_stably(tmp_path: Path) -> None:
    """A start that heartbeats briefly and crashes again is not a recovery: one incident."""
    conf = settings(tmp_path, recovery_seconds=5)
    flow = table(
        tmp_path,
        "loop",
        restart_backoff_seconds=[0.1],
        max_restart_attempts=3,
        plan={"beats": 3, "exit": 1},
    )
    async with running(conf, resolve(tmp_path, conf, flow)) as (_sup, sub):
        events = []
        async for event in sub:
            events.append(event)
            if event.kind == "gave_up":
                break
    kinds = [event.kind for event in events]
    incidents = {getattr(event, "incident", None) for event in events if event.kind != "started"}
    assert "recovered" not in kinds
    assert kinds.count("crashed") == 4  # the first run and three restarts
    assert len(incidents - {None}) == 1


async def test_an_incident_whose_restart_finishes_is_closed_and_not_reopened_by_a_restart(
    tmp_path: Path,
) -> None:
    """A restarted process that finishes its work ended the outage: recovered, then finished."""
    conf = settings(tmp_path, recovery_seconds=60)
    crash_then_finish = [
        sys.executable,
        "-c",
        "import os, sys; flag = os.environ['WORKFLOW_DB'] + '.ran';"
        "first = not os.path.exists(flag); open(flag, 'w').close(); sys.exit(1 if first else 0)",
    ]
    flow = {"name": "once", "command": crash_then_finish, "restart_backoff_seconds": [0.05]}
    flows = resolve(tmp_path, conf, flow)
    async with running(conf, flows) as (_sup, sub):
        crash = await wait_for_event(sub, "crashed", "once")
        recovered = await wait_for_event(sub, "recovered", "once")
        assert recovered.incident == crash.incident  # type: ignore[attr-defined]
        await wait_for_event(sub, "finished", "once")
    async with running(conf, flows) as (sup, sub):
        events = await collect(sub, 0.5)
        assert [e.kind for e in events if e.kind in ("restarted", "started")] == ["started"]
        [status] = await sup.status("once")
        assert status.restarts == 0


async def test_downtime_runs_from_the_failure_to_the_first_heartbeat_after_it(
    tmp_path: Path,
) -> None:
    """Not to the end of the confirmation window: that is the supervisor's caution."""
    conf = settings(tmp_path, recovery_seconds=1.5)
    marker = tmp_path / "crashed-once"
    flow = table(
        tmp_path,
        "blip",
        restart_backoff_seconds=[0.05],
        plan={"beats": 2, "exit": 1, "crash_once": str(marker)},
    )
    async with running(conf, resolve(tmp_path, conf, flow)) as (_sup, sub):
        crash = await wait_for_event(sub, "crashed", "blip")
        recovered = await wait_for_event(sub, "recovered", "blip", timeout=10)
        assert isinstance(recovered, Recovered)
        confirmed_after = (recovered.time - crash.time).total_seconds()
        assert confirmed_after >= 1.5
        assert 0 < recovered.down_seconds < confirmed_after - 1.0
