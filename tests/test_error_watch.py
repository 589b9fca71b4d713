"""S6: each new ``supervisor.last_error`` text is exactly one error event, within about a second."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from supervisor.events import ErrorReported, StatusChanged
from tests.supervisor_harness import (
    collect,
    resolve,
    running,
    settings,
    table,
    wait_for_event,
    write_state,
)
from workflows.contract import LAST_ERROR_KEY, STATUS_KEY

pytestmark = pytest.mark.timeout(15)


def idle(tmp_path: Path, name: str) -> dict[str, object]:
    """A workflow that is not started: the test writes its table itself."""
    return table(tmp_path, name, autostart=False)


async def test_error_texts_in_order_exactly_once(tmp_path: Path) -> None:
    conf = settings(tmp_path)
    errors = [[2, "first"], [4, "second"], [6, "second"], [8, "third"]]
    flow = table(tmp_path, "noisy", plan={"beats": 12, "errors": errors})
    async with running(conf, resolve(tmp_path, conf, flow)) as (_sup, sub):
        seen = []
        async for event in sub:
            if event.kind == "error":
                seen.append(event.detail)
            if event.kind == "finished":
                break
    assert seen == ["first", "second", "second", "third"]  # a rewrite is news again


async def test_a_write_is_reported_within_a_second_every_time(tmp_path: Path) -> None:
    conf = settings(tmp_path)
    db = tmp_path / "quiet.db"
    write_state(db, STATUS_KEY, "idle")
    async with running(conf, resolve(tmp_path, conf, idle(tmp_path, "quiet"))) as (_sup, sub):
        for number in range(10, 40):  # same length each time: only the mtime can tell
            text = f"error {number}"
            written = time.time()
            write_state(db, LAST_ERROR_KEY, text)
            event = await wait_for_event(sub, "error", "quiet", timeout=1.5)
            assert isinstance(event, ErrorReported)
            assert event.text == text
            assert event.time.timestamp() - written < 1.0


async def test_a_b_a_is_three_events(tmp_path: Path) -> None:
    conf = settings(tmp_path)
    db = tmp_path / "flip.db"
    write_state(db, STATUS_KEY, "running")
    async with running(conf, resolve(tmp_path, conf, idle(tmp_path, "flip"))) as (_sup, sub):
        for text in ("A", "B", "A"):
            write_state(db, LAST_ERROR_KEY, text)
            assert (await wait_for_event(sub, "error", "flip")).detail == text


async def test_the_same_text_is_not_repeated_across_supervisor_restarts(tmp_path: Path) -> None:
    conf = settings(tmp_path)
    db = tmp_path / "keep.db"
    write_state(db, STATUS_KEY, "running")
    flows = resolve(tmp_path, conf, idle(tmp_path, "keep"))
    async with running(conf, flows) as (_sup, sub):
        write_state(db, LAST_ERROR_KEY, "disk full")
        await wait_for_event(sub, "error", "keep")
    async with running(conf, flows) as (_sup, sub):
        assert [e for e in await collect(sub, 0.4) if e.kind == "error"] == []
        write_state(db, LAST_ERROR_KEY, "disk still full")
        event = await wait_for_event(sub, "error", "keep")
        assert event.detail == "disk still full"
    async with running(conf, flows) as (sup, sub):
        assert [e for e in await collect(sub, 0.3) if e.kind == "error"] == []
        records = await sup.recent_events("keep", 50)
    assert [r.detail for r in records if r.kind == "error"] == ["disk still full", "disk full"]


async def test_what_the_database_held_before_the_first_supervisor_is_history(
    tmp_path: Path,
) -> None:
    conf = settings(tmp_path)
    db = tmp_path / "old.db"
    write_state(db, LAST_ERROR_KEY, "from last year")
    write_state(db, STATUS_KEY, "error")
    async with running(conf, resolve(tmp_path, conf, idle(tmp_path, "old"))) as (sup, sub):
        assert [e.kind for e in await collect(sub, 0.3)] == []
        [status] = await sup.status("old")
        assert status.last_error == "from last year"


async def test_a_status_change_is_a_status_event(tmp_path: Path) -> None:
    conf = settings(tmp_path)
    db = tmp_path / "moves.db"
    write_state(db, STATUS_KEY, "idle")
    async with running(conf, resolve(tmp_path, conf, idle(tmp_path, "moves"))) as (_sup, sub):
        write_state(db, STATUS_KEY, "running")
        event = await wait_for_event(sub, "status", "moves")
        assert isinstance(event, StatusChanged)
        assert (event.old, event.new) == ("idle", "running")
        write_state(db, STATUS_KEY, "done")
        event = await wait_for_event(sub, "status", "moves")
        assert isinstance(event, StatusChanged)
        assert (event.old, event.new) == ("running", "done")


async def test_errors_written_within_one_poll_are_each_reported(tmp_path: Path) -> None:
    """The library's error log keeps errors that replace each other faster than the poll."""
    from workflows.state import StateWriter

    conf = settings(tmp_path, error_poll_seconds=0.5)
    db = tmp_path / "burst.db"
    writer = StateWriter(db)
    writer.error("history before the supervisor looked")
    async with running(conf, resolve(tmp_path, conf, idle(tmp_path, "burst"))) as (_sup, sub):
        for text in ("one", "two", "three", "three", "four"):
            assert writer.error(text)
        seen = [event.detail for event in await collect(sub, 1.5) if event.kind == "error"]
    writer.close()
    assert seen == ["one", "two", "three", "three", "four"]  # each write is news


async def test_an_error_that_recurs_is_reported_again_with_its_count(tmp_path: Path) -> None:
    """Only a value read again is old news; the same text written again is a new event."""
    conf = settings(tmp_path)
    db = tmp_path / "again.db"
    write_state(db, STATUS_KEY, "running")
    flows = resolve(tmp_path, conf, idle(tmp_path, "again"))
    async with running(conf, flows) as (_sup, sub):
        for expected in (1, 2):
            write_state(db, LAST_ERROR_KEY, "disk full")
            event = await wait_for_event(sub, "error", "again")
            assert isinstance(event, ErrorReported)
            assert event.repeat == expected
        write_state(db, STATUS_KEY, "idle")  # the files change; the error is only read again
        await wait_for_event(sub, "status", "again")
        assert [e for e in await collect(sub, 0.3) if e.kind == "error"] == []
    async with running(conf, flows) as (_sup, sub):
        assert [e for e in await collect(sub, 0.3) if e.kind == "error"] == []
        write_state(db, LAST_ERROR_KEY, "disk full")  # after a restart: again, 3rd time
        event = await wait_for_event(sub, "error", "again")
        assert isinstance(event, ErrorReported)
        assert event.repeat == 3
