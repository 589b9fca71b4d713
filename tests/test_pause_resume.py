"""S7: a pause ends the process, is written to the workflow's state and survives a restart."""

from __future__ import annotations

from pathlib import Path

import pytest

from supervisor.api import SupervisorError
from tests.supervisor_harness import (
    collect,
    live_group,
    read_state_key,
    resolve,
    running,
    settings,
    table,
    wait_for_event,
    write_state,
)
from workflows.contract import PAUSED_KEY

pytestmark = pytest.mark.timeout(15)


async def test_pause_survives_a_supervisor_restart_and_resume_starts(tmp_path: Path) -> None:
    conf = settings(tmp_path)
    flows = resolve(tmp_path, conf, table(tmp_path, "nap"))
    db = tmp_path / "nap.db"
    async with running(conf, flows) as (sup, sub):
        started = await wait_for_event(sub, "started", "nap")
        status = await sup.pause("nap")
        assert status.state == "paused"
        assert status.paused
        assert status.pid is None
        await wait_for_event(sub, "paused", "nap")
        assert live_group(started.pid) == []  # type: ignore[attr-defined]
        assert read_state_key(db, PAUSED_KEY) == "true"
        with pytest.raises(SupervisorError, match="paused"):
            await sup.start("nap")
        with pytest.raises(SupervisorError, match="paused"):
            await sup.restart("nap")
        with pytest.raises(SupervisorError, match="already paused"):
            await sup.pause("nap")
    async with running(conf, flows) as (sup, sub):
        events = await collect(sub, 0.4)
        assert [e.kind for e in events if e.kind in ("started", "restarted")] == []
        [status] = await sup.status("nap")
        assert status.state == "paused"
        status = await sup.resume("nap")
        assert status.pid is not None
        assert not status.paused
        await wait_for_event(sub, "resumed", "nap")
        assert read_state_key(db, PAUSED_KEY) is None
        with pytest.raises(SupervisorError, match="not paused"):
            await sup.resume("nap")


async def test_pause_in_backoff_cancels_the_pending_restart(tmp_path: Path) -> None:
    conf = settings(tmp_path)
    flow = table(tmp_path, "wobbly", restart_backoff_seconds=[0.5], plan={"beats": 1, "exit": 1})
    async with running(conf, resolve(tmp_path, conf, flow)) as (sup, sub):
        await wait_for_event(sub, "crashed", "wobbly")
        status = await sup.pause("wobbly")
        assert status.next_restart_at is None
        events = await collect(sub, 0.8)
        assert [e.kind for e in events if e.kind in ("started", "restarted")] == []


async def test_pause_is_kept_when_the_workflow_wipes_its_database(tmp_path: Path) -> None:
    conf = settings(tmp_path)
    flows = resolve(tmp_path, conf, table(tmp_path, "wiped"))
    async with running(conf, flows) as (sup, sub):
        await wait_for_event(sub, "started", "wiped")
        await sup.pause("wiped")
    (tmp_path / "wiped.db").unlink()
    async with running(conf, flows) as (sup, sub):
        [status] = await sup.status("wiped")
        assert status.state == "paused"
        assert [e.kind for e in await collect(sub, 0.3) if e.kind == "started"] == []


async def test_a_paused_key_written_by_someone_else_is_honoured_at_start(tmp_path: Path) -> None:
    conf = settings(tmp_path)
    write_state(tmp_path / "held.db", PAUSED_KEY, "true")
    async with running(conf, resolve(tmp_path, conf, table(tmp_path, "held"))) as (sup, sub):
        assert [e.kind for e in await collect(sub, 0.3) if e.kind == "started"] == []
        assert (await sup.status("held"))[0].state == "paused"
        await sup.resume("held")
        await wait_for_event(sub, "started", "held")
