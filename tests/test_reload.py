"""A watched workflow restarts when its script changes; a broken new version is a crash."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from supervisor.events import Crashed, Reloaded, Restarted
from tests.supervisor_harness import (
    collect,
    program,
    resolve,
    running,
    settings,
    table,
    wait_for_event,
)

pytestmark = pytest.mark.timeout(15)

ROOT = Path(__file__).resolve().parents[1]


def edit(tmp_path: Path, comment: str) -> None:
    """Save the workflow program again with one more line, as an editor would."""
    path = program(tmp_path)
    path.write_text(path.read_text(encoding="utf-8") + f"\n{comment}\n", encoding="utf-8")


async def test_a_changed_script_restarts_the_workflow_with_attempts_reset(tmp_path: Path) -> None:
    conf = settings(tmp_path)
    flow = table(
        tmp_path, "live", watch=True, restart_backoff_seconds=[0.1], plan={"beats": 2, "exit": 1}
    )
    async with running(conf, resolve(tmp_path, conf, flow)) as (sup, sub):
        await wait_for_event(sub, "restarted", "live")
        assert (await sup.status("live"))[0].restarts >= 1
        edit(tmp_path, "# edited")
        reloaded = await wait_for_event(sub, "reloaded", "live", timeout=3)
        assert isinstance(reloaded, Reloaded)
        assert Path(reloaded.path) == program(tmp_path).resolve()
        restarted = await wait_for_event(sub, "restarted", "live")
        assert isinstance(restarted, Restarted)
        assert restarted.reason == "reload"
        assert restarted.attempt == 0
        assert (await sup.status("live"))[0].restarts == 0


async def test_a_burst_of_saves_is_one_reload(tmp_path: Path) -> None:
    conf = settings(tmp_path)
    flow = table(tmp_path, "burst", watch=True)
    async with running(conf, resolve(tmp_path, conf, flow)) as (_sup, sub):
        await wait_for_event(sub, "started", "burst")
        for number in range(5):  # back to back: well inside one debounce window
            edit(tmp_path, f"# save {number}")
        await wait_for_event(sub, "reloaded", "burst", timeout=3)
        later = await collect(sub, 0.8)
        assert [e.kind for e in later if e.kind == "reloaded"] == []


async def test_a_syntax_error_in_the_new_version_is_a_crash(tmp_path: Path) -> None:
    conf = settings(tmp_path)
    flow = table(tmp_path, "typo", watch=True, restart="never")
    async with running(conf, resolve(tmp_path, conf, flow)) as (sup, sub):
        await wait_for_event(sub, "started", "typo")
        program(tmp_path).write_text("def broken(:\n", encoding="utf-8")
        await wait_for_event(sub, "reloaded", "typo", timeout=3)
        crash = await wait_for_event(sub, "crashed", "typo")
        assert isinstance(crash, Crashed)
        assert crash.exit_code == 1
        assert any("SyntaxError" in line for line in crash.log_tail)
        assert (await sup.status("typo"))[0].state == "crashed"


async def test_a_stopped_workflow_is_not_started_by_a_change(tmp_path: Path) -> None:
    conf = settings(tmp_path)
    flow = table(tmp_path, "rest", watch=True)
    async with running(conf, resolve(tmp_path, conf, flow)) as (sup, sub):
        await wait_for_event(sub, "started", "rest")
        await sup.stop("rest")
        edit(tmp_path, "# edited")
        events = await collect(sub, 0.8)
        assert [e.kind for e in events if e.kind in ("reloaded", "started")] == []


async def test_a_python_workflow_script_is_watched_by_default(tmp_path: Path) -> None:
    script = tmp_path / "demo.py"
    shutil.copy(ROOT / "workflows" / "examples" / "demo.py", script)
    conf = settings(tmp_path)
    flow = {"name": "demo", "script": "demo.py", "env": {"DEMO_STEP_SECONDS": "2"}}
    async with running(conf, resolve(tmp_path, conf, flow)) as (_sup, sub):
        await wait_for_event(sub, "started", "demo")
        script.write_text(script.read_text(encoding="utf-8") + "\n# tweak\n", encoding="utf-8")
        await wait_for_event(sub, "reloaded", "demo", timeout=3)
        restarted = await wait_for_event(sub, "restarted", "demo")
        assert restarted.pid is not None  # type: ignore[attr-defined]


async def test_other_files_beside_the_script_change_nothing_and_log_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The directory is watched only to see editors' renames: its other files are not ours."""
    conf = settings(tmp_path)
    flow = table(tmp_path, "calm", watch=True)
    async with running(conf, resolve(tmp_path, conf, flow)) as (_sup, sub):
        await wait_for_event(sub, "started", "calm")
        caplog.clear()
        with caplog.at_level("INFO"):
            for number in range(5):  # the workflow's own output, a build, a log rotating
                (tmp_path / f"output-{number}.txt").write_text("x", encoding="utf-8")
            (tmp_path / "calm.db-journal").write_text("x", encoding="utf-8")
            later = await collect(sub, 1.0)
        assert [e.kind for e in later if e.kind == "reloaded"] == []
        assert [r.getMessage() for r in caplog.records if r.name.startswith("watchfiles")] == []
        edit(tmp_path, "# the script itself")  # still seen
        await wait_for_event(sub, "reloaded", "calm", timeout=3)
