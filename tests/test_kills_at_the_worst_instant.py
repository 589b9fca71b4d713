"""S1, S2, S9, S10: a kill -9 timed to the worst instant of a start leaves no copy behind,
and a state read that fails is never taken for a hang.

The kills come from the fault-injection hook (``SUPERVISOR_FAULT``, see
``supervisor/faults.py``): the supervisor SIGKILLs itself exactly at the named
instant, not somewhere near it.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
from pathlib import Path

import pytest

from supervisor.core import Supervisor
from tests.supervisor_harness import (
    Headless,
    collect,
    copies,
    resolve,
    running,
    settings,
    table,
    wait_for_event,
    write_state,
    write_toml,
)
from workflows.contract import HEARTBEAT_KEY, LAST_ERROR_KEY, format_timestamp

pytestmark = pytest.mark.timeout(30)


async def wait_until_none(marker: str, within: float = 5) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while copies(marker):
        assert loop.time() < deadline, f"still running: {copies(marker)}"
        await asyncio.sleep(0.05)


@pytest.mark.parametrize("instant", ["spawned-before-pidfile", "pidfile-before-go-ahead"])
async def test_a_kill_during_a_start_leaves_no_copy_and_the_next_start_makes_one(
    tmp_path: Path, instant: str
) -> None:
    conf = settings(tmp_path)
    marker = f"start-kill-{instant}"
    config = write_toml(
        tmp_path / "supervisor.toml",
        [table(tmp_path, "solo", db="solo.db", plan={"summary": marker})],
    )
    first = Headless(config, conf, "--json", env={"SUPERVISOR_FAULT": instant})
    try:
        assert first.proc.wait(10) == -signal.SIGKILL
    finally:
        first.close()
    # The child saw its go-ahead pipe close unwritten and never ran the workflow.
    await wait_until_none(marker)
    second = Headless(config, conf, "--json")
    try:
        pid = int(second.wait_for("started")["pid"])
        second.wait_for("status")
        assert [p.pid for p in copies(marker)] == [pid]
    finally:
        second.close()
    await wait_until_none(marker)


async def test_a_pid_file_that_cannot_be_written_means_could_not_start_and_no_process(
    tmp_path: Path,
) -> None:
    conf = settings(tmp_path)
    conf.run_dir.parent.mkdir(parents=True, exist_ok=True)
    conf.run_dir.write_text("a file where the run directory should be")
    marker = "unrecorded-start-marker"
    flow = table(
        tmp_path,
        "unrecorded",
        plan={"summary": marker},
        max_restart_attempts=2,
        restart_backoff_seconds=[0.1],
    )
    async with running(conf, resolve(tmp_path, conf, flow)) as (sup, sub):
        crash = await wait_for_event(sub, "crashed", "unrecorded")
        assert crash.detail.startswith("could not start")
        assert "pid file" in crash.detail
        await wait_for_event(sub, "gave_up", "unrecorded")
        await wait_until_none(marker)  # no attempt left a process running
        [status] = await sup.status("unrecorded")
        assert status.state == "gave_up"
        assert status.pid is None


async def test_an_error_written_while_nobody_watched_is_announced_at_the_next_start(
    tmp_path: Path,
    control_db_url: str | None,
) -> None:
    conf = settings(tmp_path, db_url=control_db_url)
    flows = resolve(tmp_path, conf, table(tmp_path, "idle", autostart=False))
    write_state(tmp_path / "idle.db", LAST_ERROR_KEY, "old news")
    async with running(conf, flows):
        pass  # first sight: what the database held is history
    write_state(tmp_path / "idle.db", LAST_ERROR_KEY, "written while the supervisor was down")
    async with running(conf, flows) as (_sup, sub):
        event = await wait_for_event(sub, "error", "idle")
        assert event.detail == "written while the supervisor was down"
    async with running(conf, flows) as (_sup, sub):
        events = await collect(sub, 0.5)
        assert [e for e in events if e.kind == "error"] == []  # announced once, not per start


async def test_a_state_database_that_cannot_be_read_is_its_own_condition_not_a_hang(
    tmp_path: Path,
) -> None:
    conf = settings(tmp_path)
    # Heartbeats, says it is idle, then writes nothing more (so it cannot trip over the
    # replaced file). No WAL: pages still in a WAL file would be read past a replaced file.
    plan = {"wal": False, "beats": 5, "final": {"supervisor.status": "idle"}, "hang": True}
    flow = table(tmp_path, "steady", hang_threshold_seconds=1.0, plan=plan)
    db = tmp_path / "steady.db"
    async with running(conf, resolve(tmp_path, conf, flow)) as (sup, sub):
        changed = await wait_for_event(sub, "status", "steady")
        if changed.detail.endswith("running"):
            await wait_for_event(sub, "status", "steady")  # -> idle: it writes no more
        good = tmp_path / "good-copy.db"
        shutil.copy(db, good)
        garbage = tmp_path / "garbage"
        garbage.write_bytes(os.urandom(8192))
        os.replace(garbage, db)  # every read fails from now on
        unreadable = await wait_for_event(sub, "state_unreadable", "steady", timeout=5)
        assert "corrupt" in unreadable.detail
        # Past the hang threshold while unreadable: no hang, and said only once.
        events = await collect(sub, 1.5)
        assert [e.kind for e in events if e.kind in ("hung", "state_unreadable")] == []
        [status] = await sup.status("steady")
        assert status.state == "running"
        assert status.db_problem is not None
        assert "corrupt" in status.db_problem
        write_state(good, HEARTBEAT_KEY, format_timestamp())
        os.replace(good, db)
        await wait_for_event(sub, "state_readable", "steady", timeout=5)


async def test_a_give_up_holds_across_supervisor_restarts_until_start(
    tmp_path: Path, control_db_url: str | None
) -> None:
    conf = settings(tmp_path, db_url=control_db_url)
    flow = table(
        tmp_path,
        "doomed",
        plan={"beats": 1, "exit": 3},
        max_restart_attempts=1,
        restart_backoff_seconds=[0.05],
    )
    flows = resolve(tmp_path, conf, flow)
    async with running(conf, flows) as (_sup, sub):
        await wait_for_event(sub, "gave_up", "doomed")
    for _ in range(2):
        async with running(conf, flows) as (sup, sub):
            [status] = await sup.status("doomed")
            assert status.state == "gave_up"
            events = await collect(sub, 0.5)
            assert [e.kind for e in events] == []  # no new start, no new give-up
    async with running(conf, flows) as (sup, sub):
        await sup.start("doomed")
        closed = await wait_for_event(sub, "incident_closed", "doomed")
        assert "started by hand" in closed.detail
        await wait_for_event(sub, "started", "doomed")


async def test_an_open_incident_continues_after_a_restart_with_its_counts(
    tmp_path: Path,
    control_db_url: str | None,
) -> None:
    conf = settings(tmp_path, db_url=control_db_url, recovery_seconds=5)
    flow = table(tmp_path, "flaky", plan={"beats": 2, "exit": 1}, restart_backoff_seconds=[30])
    flows = resolve(tmp_path, conf, flow)
    async with running(conf, flows) as (_sup, sub):
        crash = await wait_for_event(sub, "crashed", "flaky")
        assert crash.failures == 1  # type: ignore[attr-defined]
    # Down while it waited 30 s for its restart: the next start makes that restart.
    supervisor = Supervisor(conf, flows)
    sub = supervisor.events()
    await supervisor.startup()
    try:
        restarted = await wait_for_event(sub, "restarted", "flaky")
        assert restarted.incident == crash.incident  # type: ignore[attr-defined]
        assert restarted.attempt == 1  # type: ignore[attr-defined]
        assert restarted.failures == 1  # type: ignore[attr-defined]
        again = await wait_for_event(sub, "crashed", "flaky")
        assert again.incident == crash.incident  # type: ignore[attr-defined]
        assert again.failures == 2  # type: ignore[attr-defined]
    finally:
        await supervisor.shutdown()
