"""S8: nothing a workflow or its database does may stop the supervisor; it becomes a state."""

from __future__ import annotations

import os
import sqlite3
import sys
from pathlib import Path

import pytest

from supervisor.bus import Subscription
from supervisor.core import Supervisor
from supervisor.events import Crashed
from tests.supervisor_harness import (
    resolve,
    running,
    settings,
    table,
    wait_for_event,
    write_state,
)
from workflows.contract import HEARTBEAT_KEY, LAST_ERROR_KEY, STATUS_KEY

pytestmark = pytest.mark.timeout(15)

FLOOD = "import sys\nwhile True: sys.stdout.write('x' * 9999 + '\\n')"


def quiet(tmp_path: Path, name: str) -> dict[str, object]:
    return table(tmp_path, name, autostart=False)


async def still_listening(sup: Supervisor, sub: Subscription, tmp_path: Path) -> None:
    """The canary workflow's new error is still reported: the supervisor is alive and polling."""
    write_state(tmp_path / "canary.db", LAST_ERROR_KEY, "canary sings")
    event = await wait_for_event(sub, "error", "canary", timeout=2)
    assert event.detail == "canary sings"
    assert len(await sup.status()) >= 2


async def problem_of(sup: Supervisor, name: str) -> str:
    [status] = await sup.status(name)
    assert status.db_problem is not None
    return status.db_problem


@pytest.mark.parametrize(
    ("prepare", "expected"),
    [
        (lambda db: None, "database not found"),
        (lambda db: db.write_bytes(b"this is not a database, " * 200), "corrupt"),
        (lambda db: sqlite3.connect(db).execute("CREATE TABLE other (x)"), "no state table"),
        (lambda db: db.write_bytes(b""), "no state table"),
        (lambda db: write_state(db, HEARTBEAT_KEY, "last tuesday"), "malformed heartbeat"),
    ],
    ids=["missing", "corrupt", "schema-less", "empty", "malformed-heartbeat"],
)
async def test_a_bad_state_database_is_a_reported_problem(
    tmp_path: Path, prepare: object, expected: str
) -> None:
    prepare(tmp_path / "bad.db")  # type: ignore[operator]
    write_state(tmp_path / "canary.db", STATUS_KEY, "idle")
    conf = settings(tmp_path)
    flows = resolve(tmp_path, conf, quiet(tmp_path, "bad"), quiet(tmp_path, "canary"))
    async with running(conf, flows) as (sup, sub):
        await still_listening(sup, sub, tmp_path)
        assert expected in await problem_of(sup, "bad")


async def test_a_malformed_heartbeat_from_a_live_process_is_survived(tmp_path: Path) -> None:
    write_state(tmp_path / "canary.db", STATUS_KEY, "idle")
    write_state(tmp_path / "odd.db", HEARTBEAT_KEY, "not a time")
    conf = settings(tmp_path)
    flow = table(tmp_path, "odd", hang_threshold_seconds=0.3, plan={"delay": 60})
    flows = resolve(tmp_path, conf, flow, quiet(tmp_path, "canary"))
    async with running(conf, flows) as (sup, sub):
        hung = await wait_for_event(sub, "hung", "odd")
        assert "no heartbeat" in hung.detail
        await still_listening(sup, sub, tmp_path)


async def test_a_locked_database_is_reported_then_read_once_free(tmp_path: Path) -> None:
    db = tmp_path / "busy.db"
    write_state(db, STATUS_KEY, "running")
    write_state(tmp_path / "canary.db", STATUS_KEY, "idle")
    conf = settings(tmp_path)
    flows = resolve(tmp_path, conf, quiet(tmp_path, "busy"), quiet(tmp_path, "canary"))
    async with running(conf, flows) as (sup, sub):
        holder = sqlite3.connect(db, isolation_level=None)
        holder.execute("BEGIN EXCLUSIVE")
        holder.execute(
            "INSERT OR REPLACE INTO state (key, value) VALUES (?, 'while locked')",
            (LAST_ERROR_KEY,),
        )
        os.utime(db)  # as if a page had spilled: the supervisor looks, and finds it locked
        await still_listening(sup, sub, tmp_path)
        assert "locked" in await problem_of(sup, "busy")
        [status] = await sup.status("busy")
        assert status.status == "running"  # what was known before the lock is kept
        holder.execute("COMMIT")
        holder.close()
        event = await wait_for_event(sub, "error", "busy", timeout=2)
        assert event.detail == "while locked"


async def test_a_command_that_does_not_exist_is_a_crash_with_the_os_error(tmp_path: Path) -> None:
    write_state(tmp_path / "canary.db", STATUS_KEY, "idle")
    conf = settings(tmp_path)
    ghost = {"name": "ghost", "command": ["/no/such/program"], "restart_backoff_seconds": [0.1]}
    flows = resolve(tmp_path, conf, ghost, quiet(tmp_path, "canary"))
    async with running(conf, flows) as (sup, sub):
        crash = await wait_for_event(sub, "crashed", "ghost")
        assert isinstance(crash, Crashed)
        assert crash.os_error is not None
        assert "FileNotFoundError" in crash.os_error
        assert crash.will_restart
        await wait_for_event(sub, "crashed", "ghost")  # the restart failed the same way
        await still_listening(sup, sub, tmp_path)
        assert any("could not start" in line for line in await sup.tail("ghost", 5))


async def test_a_flood_of_output_is_rotated_and_does_not_stall_the_supervisor(
    tmp_path: Path,
) -> None:
    write_state(tmp_path / "canary.db", STATUS_KEY, "idle")
    conf = settings(tmp_path, log_max_bytes=1_000_000, log_backups=2)
    flood = {
        "name": "flood",
        "command": [
            sys.executable,
            "-c",
            "import sys\nwhile True: sys.stdout.write('x' * 9999 + '\\n')",
        ],
        "restart": "never",
    }
    flows = resolve(tmp_path, conf, flood, quiet(tmp_path, "canary"))
    async with running(conf, flows) as (sup, sub):
        await wait_for_event(sub, "started", "flood")
        for _ in range(3):
            await still_listening(sup, sub, tmp_path)
            write_state(tmp_path / "canary.db", LAST_ERROR_KEY, "reset")
            await wait_for_event(sub, "error", "canary", timeout=2)
        lines = await sup.tail("flood", 3)
        assert lines
        assert set(lines[-1]) == {"x"}
        await sup.stop("flood")
    logs = list((tmp_path / "data" / "logs").glob("flood.log*"))
    assert 1 < len(logs) <= 3
    assert all(path.stat().st_size <= 2_000_000 for path in logs)
