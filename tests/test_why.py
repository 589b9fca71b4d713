"""/why end to end: the button and the command in the chat, the console and the headless CLI.

The bot runs against the stand-in Bot API and, where Claude is configured,
the real anthropic SDK against the stand-in Messages endpoint
(``ANTHROPIC_BASE_URL``); without a key the rules answer, offline.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.bot_harness import (
    ALERT_CHAT,
    COMMAND_CHAT,
    TOKEN,
    USER,
    BotRig,
    bot_running,
    process_env,
    worker_table,
)
from tests.conditions import wait_until
from tests.diagnosis_rig import API_KEY
from tests.fakes.botapi import FakeBotAPI, SentMessage
from tests.fakes.messages_api import FakeMessagesAPI

pytestmark = pytest.mark.timeout(60)
MISSING = "ModuleNotFoundError: No module named 'requests'"


async def crash_with_a_missing_module(rig: BotRig) -> SentMessage:
    await rig.wait_state("worker", "running")
    rig.order("worker", print=MISSING)  # printed first: the worker obeys "exit" before "print"
    log = rig.supervisor.settings.logs_dir / "worker.log"
    await wait_until(lambda: MISSING in log.read_text(encoding="utf-8"))
    rig.order("worker", print=MISSING, exit=1)
    [crash] = await rig.alert("💥 <b>worker</b> crashed")
    return crash


async def answer_of(first: SentMessage, text: str) -> str:
    """The answer: the edit of "looking…", or the first message itself when the answer was
    ready before "looking…" went out (a waiting reply is replaced, not sent twice)."""
    await wait_until(lambda: any(text in shown for shown in (first.text, *first.edits)), 20)
    return next(shown for shown in (first.text, *first.edits) if text in shown)


async def test_the_why_button_answers_at_once_then_with_the_rules_verdict_offline(
    tmp_path: Path,
) -> None:
    tables = [worker_table(tmp_path, restart="never")]
    async with bot_running(tmp_path, tables) as rig:
        crash = await crash_with_a_missing_module(rig)
        seen = {m.message_id for m in rig.fake.sent_matching()}
        rig.fake.add_callback("why:worker", ALERT_CHAT, USER, crash.message_id)
        [first] = await rig.fake.wait_for_sent(
            lambda m: m.chat_id == ALERT_CHAT and m.message_id not in seen
        )
        answer = await answer_of(first, "environment")
        assert "high confidence" in answer
        assert "No module named" in answer
        assert "Claude is not configured" in answer
        assert "rules, no model" in answer


async def test_with_claude_the_answer_rests_on_checked_evidence_and_names_its_cost(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with FakeMessagesAPI() as claude:
        monkeypatch.setenv("ANTHROPIC_API_KEY", API_KEY)
        monkeypatch.setenv("ANTHROPIC_BASE_URL", claude.base_url)
        tables = [worker_table(tmp_path, restart="never", env={"DB_PASSWORD": "hunter2-secret"})]
        async with bot_running(tmp_path, tables) as rig:
            await crash_with_a_missing_module(rig)
            pack = await rig.supervisor.evidence("worker")
            [cited] = [item for item in pack.items if item.text.endswith(MISSING)]
            claude.queue_reply(
                json.dumps(
                    {
                        "cause": "The requests package is not installed in its venv",
                        "category": "environment",
                        "confidence": "high",
                        "evidence": [
                            {"evidence_id": cited.id, "quote": MISSING},
                            {"evidence_id": "log:1", "quote": "an invented line"},
                        ],
                        "next_steps": ["pip install requests in its venv"],
                        "restart_helps": False,
                    }
                ),
                input_tokens=1200,
                output_tokens=80,
            )
            [first] = await rig.send("/why worker")
            answer = await answer_of(first, "requests package is not installed")
            assert cited.id in answer
            assert "an invented line" not in answer  # checked against the pack: dropped
            assert "1,200 in / 80 out tokens" in answer
            sent = json.dumps(claude.message_requests())
            for secret in (TOKEN, API_KEY, "hunter2-secret"):
                assert secret not in sent


async def test_the_evidence_button_sends_the_pack_as_a_file(tmp_path: Path) -> None:
    async with bot_running(tmp_path, [worker_table(tmp_path, restart="never")]) as rig:
        await crash_with_a_missing_module(rig)
        seen = {m.message_id for m in rig.fake.sent_matching()}
        rig.fake.add_callback("evidence:worker", COMMAND_CHAT, USER, 1)
        [document] = await rig.fake.wait_for_sent(
            lambda m: m.message_id not in seen and m.document is not None, timeout=10
        )
        assert document.document is not None
        assert document.document.filename == "worker-evidence.txt"
        assert MISSING.encode() in document.document.data


@pytest.fixture
def fake() -> Iterator[FakeBotAPI]:
    with FakeBotAPI(TOKEN) as server:
        yield server


def test_why_in_the_console_and_the_headless_cli_offline(tmp_path: Path, fake: FakeBotAPI) -> None:
    env = process_env(fake, tmp_path)
    del env["TELEGRAM_BOT_TOKEN"]
    console = subprocess.run(
        [sys.executable, "-m", "bot", "--console"],
        env=env,
        input="/why demo\n/why nope\n",
        capture_output=True,
        text=True,
        timeout=40,
        check=False,
    )
    assert console.returncode == 0, console.stderr
    assert "looking at its evidence" in console.stdout
    assert "rules, no model" in console.stdout
    assert "unknown workflow 'nope'" in console.stdout
    cli = subprocess.run(
        [sys.executable, "-m", "supervisor", "why", "demo", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=40,
        check=False,
    )
    assert cli.returncode == 0, cli.stderr
    verdict = json.loads(cli.stdout)
    assert verdict["workflow"] == "demo"
    assert verdict["source"] == "rules"
    assert "Claude is not configured" in verdict["note"]
    unknown = subprocess.run(
        [sys.executable, "-m", "supervisor", "why", "nope"],
        env=env,
        capture_output=True,
        text=True,
        timeout=40,
        check=False,
    )
    assert unknown.returncode == 2
    assert "unknown workflow 'nope'" in unknown.stderr


async def test_a_workflow_that_has_not_failed_gets_no_diagnosis_and_costs_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with FakeMessagesAPI() as claude:
        monkeypatch.setenv("ANTHROPIC_API_KEY", API_KEY)
        monkeypatch.setenv("ANTHROPIC_BASE_URL", claude.base_url)
        async with bot_running(tmp_path, [worker_table(tmp_path)]) as rig:
            await rig.wait_state("worker", "running")
            [first] = await rig.send("/why worker")
            answer = await answer_of(first, "nothing has failed")
            assert "it is running and has recorded no error" in answer
        assert claude.message_requests() == []
