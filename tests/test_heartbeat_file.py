"""S4b: a heartbeat may be a touch of the file the supervisor names (``WORKFLOW_HEARTBEAT_FILE``).

It is what the workflow library does when given one, and it costs the supervisor
no read per beat: the file is looked at by the hang check, by /status and while
a start waits for its first beat. The later of it and the table's key counts.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
from pathlib import Path

import pytest

from supervisor.events import Event, Hung
from supervisor.knownsettings import known_names, unknown_setting
from tests.supervisor_harness import (
    collect,
    read_state_key,
    resolve,
    running,
    settings,
    table,
    wait_for_event,
)
from workflows.contract import HEARTBEAT_FILE_ENV, HEARTBEAT_KEY
from workflows.state import StateWriter

pytestmark = pytest.mark.timeout(30)


async def test_a_workflow_beating_by_its_file_runs_and_is_never_taken_for_hung(
    tmp_path: Path,
) -> None:
    conf = settings(tmp_path)
    flow = table(tmp_path, "filed", hang_threshold_seconds=0.5, plan={"beat_file": True})
    async with running(conf, resolve(tmp_path, conf, flow)) as (sup, sub):
        await wait_for_event(sub, "started", "filed")
        states: list[str] = []
        while not states or states[-1] == "starting":  # the first beat: a touch
            [status] = await sup.status("filed")
            states.append(status.state)
            await asyncio.sleep(0.02)
        assert states[-1] == "running"
        events: list[Event] = await collect(sub, 2.0)  # four hang thresholds of silence
        assert not [e for e in events if isinstance(e, Hung)]
        [status] = await sup.status("filed")
        assert status.heartbeat_age is not None
        assert status.heartbeat_age < 0.5
        # Not one beat went to the table: the supervisor had none to read.
        assert read_state_key(tmp_path / "filed.db", HEARTBEAT_KEY) is None


async def test_a_workflow_whose_file_is_no_longer_touched_is_hung(tmp_path: Path) -> None:
    conf = settings(tmp_path)
    flow = table(
        tmp_path,
        "stops",
        restart="never",
        hang_threshold_seconds=0.5,
        plan={"beat_file": True, "beats": 5, "hang": True},
    )
    async with running(conf, resolve(tmp_path, conf, flow)) as (_sup, sub):
        hung = await wait_for_event(sub, "hung", "stops")
        assert isinstance(hung, Hung)
        assert hung.heartbeat_age is not None
        assert hung.heartbeat_age >= 0.5


def test_the_library_touches_the_named_file_instead_of_writing_the_table(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    db, beat = tmp_path / "w.db", tmp_path / "beats" / "w"
    beat.parent.mkdir()
    writer = StateWriter(db)
    assert writer.set("supervisor.summary", "working")  # the table exists from here on
    monkeypatch.setenv(HEARTBEAT_FILE_ENV, str(beat))
    assert writer.heartbeat()
    assert beat.exists()
    touched = beat.stat().st_mtime_ns
    os.utime(beat, ns=(touched - 10**9, touched - 10**9))
    assert writer.heartbeat()
    assert beat.stat().st_mtime_ns > touched - 10**9
    assert read_state_key(db, HEARTBEAT_KEY) is None
    # A file it cannot touch: the table's key, and a line saying why.
    monkeypatch.setenv(HEARTBEAT_FILE_ENV, str(tmp_path / "missing" / "w"))
    with caplog.at_level(logging.WARNING):
        assert writer.heartbeat()
    assert "writing the state table instead" in caplog.text
    assert read_state_key(db, HEARTBEAT_KEY) is not None
    # None named (a workflow run by hand): the key, as ever.
    monkeypatch.delenv(HEARTBEAT_FILE_ENV)
    with sqlite3.connect(db) as conn:
        conn.execute("DELETE FROM state WHERE key = ?", (HEARTBEAT_KEY,))
    assert writer.heartbeat()
    assert read_state_key(db, HEARTBEAT_KEY) is not None
    writer.close()


def test_a_supervisor_run_as_a_workflow_is_not_refused_for_the_name_it_is_given() -> None:
    assert unknown_setting({HEARTBEAT_FILE_ENV}, known_names([])) is None
