"""Heal end to end: the real bot, a temporary git repository, the stand-in Messages endpoint.

The workflow is a script in a git repository that crashes with the same bug
each run. ``/fix`` asks for a diagnosis (one scripted reply), then the heal
agent makes the edit the endpoint scripts, the gates and a smoke run prove
it, and the proposal comes with its buttons; Apply commits, fast-forwards
and restarts; Reject leaves the tree as it was; probation rolls back a fix
whose failure comes back.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.bot_harness import ALERT_CHAT, USER, BotRig, bot_running
from tests.conditions import wait_until
from tests.fakes.botapi import SentMessage
from tests.fakes.messages_api import FakeMessagesAPI

pytestmark = pytest.mark.timeout(90)
API_KEY = "sk-ant-api03-heal-test-key-not-real-0123456789"

FLOW = """\
import os, sqlite3, sys, time
from workflows.contract import (HEARTBEAT_KEY, STATE_TABLE_DDL, STATUS_KEY, SUMMARY_KEY,
    UPSERT_STATE_SQL, format_timestamp)

db = sqlite3.connect(os.environ["WORKFLOW_DB"], timeout=5, isolation_level=None)
db.execute(STATE_TABLE_DDL)
db.execute(UPSERT_STATE_SQL, (STATUS_KEY, "running"))
db.execute(UPSERT_STATE_SQL, (SUMMARY_KEY, "fetching"))
settings = {"retries": 3}
for beat in range(100000):
    db.execute(UPSERT_STATE_SQL, (HEARTBEAT_KEY, format_timestamp()))
    if beat == CRASH_AT:
        print("fetching with", settings["retry"], flush=True)
    time.sleep(0.05)
"""
BUG = 'settings["retry"]'
FIX = 'settings["retries"]'


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args],
        cwd=repo,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


def make_repo(tmp_path: Path, crash_at: int = 4) -> Path:
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "flow.py").write_text(FLOW.replace("CRASH_AT", str(crash_at)), encoding="utf-8")
    (repo / "tests").mkdir()
    (repo / "tests" / "test_flow.py").write_text("def test_it():\n    pass\n", encoding="utf-8")
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "the flow")
    return repo


def table(repo: Path, **options: Any) -> dict[str, Any]:
    return {
        "name": "flow",
        "command": [sys.executable, "flow.py"],
        "cwd": str(repo),
        "env": {"PYTHONPATH": str(Path(__file__).resolve().parents[1])},
        "restart": "never",
        "hang_threshold_seconds": 30,
        "heal_smoke_seconds": 2,
        "heal_probation_seconds": 60,
        **options,
    }


@pytest.fixture
def claude(monkeypatch: pytest.MonkeyPatch) -> Any:
    with FakeMessagesAPI() as fake:
        monkeypatch.setenv("ANTHROPIC_API_KEY", API_KEY)
        monkeypatch.setenv("ANTHROPIC_BASE_URL", fake.base_url)
        yield fake


def queue_diagnosis(claude: FakeMessagesAPI) -> None:
    claude.queue_reply(
        json.dumps(
            {
                "cause": "flow.py reads settings['retry'], a key it never set",
                "category": "bug",
                "confidence": "high",
                "evidence": [],
                "next_steps": ["read settings['retries']"],
                "restart_helps": False,
            }
        )
    )


def queue_fix(
    claude: FakeMessagesAPI, old: str = BUG, new: str = FIX, path: str = "flow.py"
) -> None:
    claude.queue_tool_use(
        "edit", {"file_path": path, "old_string": old, "new_string": new}, "toolu_fix"
    )
    report = {
        "summary": "read the retries setting by its real name",
        "rationale": ["KeyError: 'retry' on every run", "the key is 'retries'", "one line"],
    }
    claude.queue_reply(json.dumps(report), input_tokens=2000, output_tokens=300)


async def crashed(rig: BotRig) -> None:
    await rig.wait_state("flow", "crashed", within=20)


async def proposal(rig: BotRig) -> SentMessage:
    [found] = await rig.fake.wait_for_sent(
        lambda m: m.chat_id == ALERT_CHAT and "🩹 Fix for" in m.text, 1, 60
    )
    return found


def edited_to(message: SentMessage, text: str) -> Callable[[SentMessage], bool]:
    """``message``, once it says ``text``."""
    return lambda m: m.message_id == message.message_id and text in m.text


def button(message: SentMessage, label: str) -> str:
    assert message.reply_markup is not None
    for row in message.reply_markup["inline_keyboard"]:
        for each in row:
            if each["text"] == label:
                return str(each["callback_data"])
    raise AssertionError(f"no {label!r} on {message.text!r}")


async def test_fix_proposes_apply_commits_restarts_and_it_recovers(
    tmp_path: Path, claude: FakeMessagesAPI
) -> None:
    repo = make_repo(tmp_path)
    base = git(repo, "rev-parse", "HEAD")
    async with bot_running(tmp_path, [table(repo)]) as rig:
        await crashed(rig)
        queue_diagnosis(claude)
        queue_fix(claude)
        [first] = await rig.send("/fix flow")
        assert "looking for a fix" in first.text
        shown = await proposal(rig)
        assert "1 file +1/−1" in shown.text
        assert "checks ✅" in shown.text
        assert "smoke ✅" in shown.text
        assert FIX in shown.text
        assert git(repo, "rev-parse", "HEAD") == base  # nothing live changed yet
        rig.fake.add_callback(button(shown, "📄 Patch"), ALERT_CHAT, USER, shown.message_id)
        [patch] = await rig.fake.wait_for_sent(lambda m: m.document is not None, 1, 10)
        assert patch.document is not None
        assert (patch.document.filename or "").endswith(".patch")
        assert FIX in patch.document.data.decode()
        rig.fake.add_callback(button(shown, "Apply & restart"), ALERT_CHAT, USER, shown.message_id)
        [applied] = await rig.fake.wait_for_sent(lambda m: "fix applied as" in m.text, 1, 20)
        assert "Roll back" in json.dumps(applied.reply_markup)
        assert FIX in (repo / "flow.py").read_text(encoding="utf-8")
        assert git(repo, "rev-parse", "HEAD~1") == base
        assert "Approved-by:" in git(repo, "log", "-1", "--format=%B")
        await rig.wait_state("flow", "running", within=20)
        await wait_until(lambda: "fetching with 3" in _log(rig), 20)
        rig.fake.add_callback(button(applied, "Roll back"), ALERT_CHAT, USER, applied.message_id)
        await rig.fake.wait_for_sent(lambda m: "ROLLED BACK" in m.text, 1, 20)
        assert BUG in (repo / "flow.py").read_text(encoding="utf-8")
        assert git(repo, "rev-parse", "HEAD~2") == base  # the fix and its revert stay in history


async def test_reject_leaves_the_tree_as_it_was(tmp_path: Path, claude: FakeMessagesAPI) -> None:
    repo = make_repo(tmp_path)
    base = git(repo, "rev-parse", "HEAD")
    async with bot_running(tmp_path, [table(repo)]) as rig:
        await crashed(rig)
        queue_diagnosis(claude)
        queue_fix(claude)
        await rig.send("/fix flow")
        shown = await proposal(rig)
        rig.fake.add_callback(button(shown, "Reject"), ALERT_CHAT, USER, shown.message_id)
        await rig.fake.wait_for_sent(lambda m: "rejected by" in m.text, 1, 10)
        assert git(repo, "rev-parse", "HEAD") == base
        assert BUG in (repo / "flow.py").read_text(encoding="utf-8")
        assert git(repo, "status", "--porcelain") == ""
        assert "heal/" not in git(repo, "branch", "--list")


async def test_a_fix_that_still_crashes_is_refused_by_the_smoke_run(
    tmp_path: Path, claude: FakeMessagesAPI
) -> None:
    repo = make_repo(tmp_path)
    async with bot_running(tmp_path, [table(repo)]) as rig:
        await crashed(rig)
        queue_diagnosis(claude)
        queue_fix(claude, new='settings["retry_count"]')  # still the wrong key
        await rig.send("/fix flow")
        shown = await proposal(rig)
        assert "smoke ❌" in shown.text
        assert "Apply & restart" not in json.dumps(shown.reply_markup)


async def test_probation_rolls_back_when_the_same_failure_returns(
    tmp_path: Path, claude: FakeMessagesAPI
) -> None:
    # It crashes after 80 beats (4 s), past the smoke run's window: the smoke run passes.
    repo = make_repo(tmp_path, crash_at=80)
    base = git(repo, "rev-parse", "HEAD")
    async with bot_running(tmp_path, [table(repo, heal_smoke_seconds=1.5)]) as rig:
        await crashed(rig)
        queue_diagnosis(claude)
        queue_fix(claude, old="time.sleep(0.05)", new="time.sleep(0.05)  # patience")
        await rig.send("/fix flow")
        shown = await proposal(rig)
        rig.fake.add_callback(button(shown, "Apply & restart"), ALERT_CHAT, USER, shown.message_id)
        [back] = await rig.fake.wait_for_sent(lambda m: "ROLLED BACK" in m.text, 1, 40)
        assert "same failure came back" in back.text
        assert BUG in (repo / "flow.py").read_text(encoding="utf-8")
        assert "# patience" not in (repo / "flow.py").read_text(encoding="utf-8")
        assert git(repo, "rev-parse", "HEAD~2") == base  # the fix, then its revert


async def test_no_request_once_the_budget_for_the_failure_is_spent(
    tmp_path: Path, claude: FakeMessagesAPI
) -> None:
    repo = make_repo(tmp_path)
    async with bot_running(tmp_path, [table(repo)]) as rig:
        await crashed(rig)
        queue_diagnosis(claude)  # asked once: the second /fix finds it cached
        for _ in range(2):
            queue_fix(claude)
            await rig.send("/fix flow")
            shown = await proposal(rig)
            rig.fake.add_callback(button(shown, "Reject"), ALERT_CHAT, USER, shown.message_id)
            await rig.fake.wait_for_sent(edited_to(shown, "rejected"), 1, 10)
        sent = len(claude.message_requests())
        [first] = await rig.send("/fix flow")
        await wait_until(
            lambda: "2 proposals were already made" in first.text + "".join(first.edits), 20
        )
        assert len(claude.message_requests()) == sent  # the diagnosis is cached; heal not asked


async def test_a_workflow_outside_git_cannot_be_healed(
    tmp_path: Path, claude: FakeMessagesAPI
) -> None:
    repo = make_repo(tmp_path)
    shutil.rmtree(repo / ".git")
    async with bot_running(tmp_path, [table(repo)]) as rig:
        await crashed(rig)
        queue_diagnosis(claude)
        [first] = await rig.send("/fix flow")
        await wait_until(lambda: "not a git repository" in first.text + "".join(first.edits), 20)


def _log(rig: BotRig) -> str:
    return (rig.supervisor.settings.logs_dir / "flow.log").read_text(encoding="utf-8")


async def test_apply_on_a_moved_live_tree_is_refused_as_stale(
    tmp_path: Path, claude: FakeMessagesAPI
) -> None:
    repo = make_repo(tmp_path)
    async with bot_running(tmp_path, [table(repo)]) as rig:
        await crashed(rig)
        queue_diagnosis(claude)
        queue_fix(claude)
        await rig.send("/fix flow")
        shown = await proposal(rig)
        (repo / "NOTES.md").write_text("someone else's work\n", encoding="utf-8")
        git(repo, "add", "NOTES.md")
        git(repo, "commit", "-q", "-m", "meanwhile")
        moved = git(repo, "rev-parse", "HEAD")
        rig.fake.add_callback(button(shown, "Apply & restart"), ALERT_CHAT, USER, shown.message_id)
        [stale] = await rig.fake.wait_for_sent(lambda m: "stale" in m.text, 1, 20)
        assert "propose again" in stale.text
        assert git(repo, "rev-parse", "HEAD") == moved
        assert BUG in (repo / "flow.py").read_text(encoding="utf-8")


async def test_heal_propose_offers_a_fix_by_itself_after_the_same_failure_twice(
    tmp_path: Path, claude: FakeMessagesAPI
) -> None:
    repo = make_repo(tmp_path, crash_at=2)
    unasked = table(
        repo,
        heal="propose",
        restart="on-failure",
        restart_backoff_seconds=[0.2],
        max_restart_attempts=1,
    )
    queue_diagnosis(claude)
    queue_fix(claude)
    async with bot_running(tmp_path, [unasked]) as rig:
        shown = await proposal(rig)  # nobody typed /fix
        assert "Apply & restart" in json.dumps(shown.reply_markup)
        assert BUG in (repo / "flow.py").read_text(encoding="utf-8")


async def test_heal_auto_applies_a_proposal_that_passed_every_gate(
    tmp_path: Path, claude: FakeMessagesAPI
) -> None:
    repo = make_repo(tmp_path)
    async with bot_running(tmp_path, [table(repo, heal="auto")]) as rig:
        await crashed(rig)
        queue_diagnosis(claude)
        queue_fix(claude)
        await rig.send("/fix flow")
        shown = await proposal(rig)
        assert "applying it by itself" in shown.text
        [applied] = await rig.fake.wait_for_sent(lambda m: "fix applied as" in m.text, 1, 20)
        assert 'heal = "auto"' in applied.text
        assert FIX in (repo / "flow.py").read_text(encoding="utf-8")
