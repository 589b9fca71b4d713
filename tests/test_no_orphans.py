"""S1/S2: never two copies of a workflow; no process of its group outlives a stop or a kill -9."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from tests.supervisor_harness import (
    Headless,
    copies,
    live_group,
    resolve,
    running,
    settings,
    table,
    wait_for_event,
    write_toml,
)

pytestmark = pytest.mark.timeout(20)


async def test_stop_ends_the_whole_group(tmp_path: Path) -> None:
    conf = settings(tmp_path)
    flow = table(tmp_path, "tree", plan={"child": True})
    async with running(conf, resolve(tmp_path, conf, flow)) as (sup, sub):
        started = await wait_for_event(sub, "started", "tree")
        pgid = started.pid  # type: ignore[attr-defined]
        await wait_for_event(sub, "status", "tree")  # running: the grandchild exists by now
        assert len(live_group(pgid)) == 2
        status = await sup.stop("tree")
        assert status.state == "stopped"
        assert live_group(pgid) == []
        stopped = await wait_for_event(sub, "stopped", "tree")
        assert stopped.detail == "requested"


async def test_stop_kills_what_ignores_sigterm(tmp_path: Path) -> None:
    conf = settings(tmp_path, stop_grace_seconds=0.3)
    flow = table(tmp_path, "deaf", plan={"ignore_term": True, "child": True})
    async with running(conf, resolve(tmp_path, conf, flow)) as (sup, sub):
        started = await wait_for_event(sub, "started", "deaf")
        await wait_for_event(sub, "status", "deaf")
        await sup.stop("deaf")
        assert live_group(started.pid) == []  # type: ignore[attr-defined]


async def test_shutdown_ends_every_group(tmp_path: Path) -> None:
    conf = settings(tmp_path)
    flows = [table(tmp_path, name, plan={"child": True}) for name in ("one", "two")]
    pgids = []
    async with running(conf, resolve(tmp_path, conf, *flows)) as (_sup, sub):
        for _ in flows:
            pgids.append((await wait_for_event(sub, "started")).pid)  # type: ignore[attr-defined]
        await wait_for_event(sub, "status")
    assert [live_group(pgid) for pgid in pgids] == [[], []]


def test_kill_9_of_the_supervisor_then_a_new_one_leaves_exactly_one_copy(tmp_path: Path) -> None:
    conf = settings(tmp_path)
    marker = "orphan-check-marker"
    config = write_toml(
        tmp_path / "supervisor.toml",
        [table(tmp_path, "solo", db="solo.db", plan={"child": True, "summary": marker})],
    )
    first = Headless(config, conf, "--json")
    try:
        old_pgid = int(first.wait_for("started")["detail"].split()[-1])
        first.wait_for("status")  # the grandchild has been started
        assert len(live_group(old_pgid)) == 2
        os.kill(first.proc.pid, signal.SIGKILL)
        first.proc.wait(5)
    finally:
        first.close()
    assert len(live_group(old_pgid)) == 2  # killed -9: nobody ended them
    second = Headless(config, conf, "--json")
    try:
        new_pgid = int(second.wait_for("started")["detail"].split()[-1])
        assert new_pgid != old_pgid
        assert live_group(old_pgid) == []
        assert [p.pid for p in copies(marker)] == [new_pgid]
    finally:
        second.close()
    assert second.proc.returncode == 0
    assert live_group(new_pgid) == []
