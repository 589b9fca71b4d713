"""The agent bridge through the real bot: stand-in Bot API, stand-in Messages endpoint.

Plain text (or ``/ask``) starts a session; the agent's tool rounds show as
one edited progress message; a proposed edit waits for a tap; Stop cancels;
sessions outlive the bot; strangers get nothing; long answers are split;
secrets never reach the endpoint.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from tests.bot_harness import (
    ALERT_CHAT,
    COMMAND_CHAT,
    TOKEN,
    USER,
    BotRig,
    bot_running,
    worker_table,
)
from tests.fakes.botapi import SentMessage
from tests.fakes.messages_api import FakeMessagesAPI, tool_results

API_KEY = "sk-ant-api03-bridge-test-key-not-real-0123456789"
SECRET = "hunter2-bridge-secret"


@pytest.fixture
def claude(monkeypatch: pytest.MonkeyPatch) -> Any:
    with FakeMessagesAPI() as fake:
        monkeypatch.setenv("ANTHROPIC_API_KEY", API_KEY)
        monkeypatch.setenv("ANTHROPIC_BASE_URL", fake.base_url)
        monkeypatch.setenv("AGENT_APPROVAL_SECONDS", "5")
        yield fake


def mine(rig: BotRig) -> set[int]:
    return {m.message_id for m in rig.fake.sent_matching()}


async def answer_with(rig: BotRig, text: str, within: float = 30) -> SentMessage:
    [found] = await rig.fake.wait_for_sent(
        lambda m: m.chat_id == COMMAND_CHAT and text in m.text and "session" in m.text, 1, within
    )
    return found


def tables(tmp_path: Path, **options: Any) -> list[dict[str, Any]]:
    return [worker_table(tmp_path, cwd=str(tmp_path / "repo"), **options)]


def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    root.mkdir(exist_ok=True)
    (root / "fetch.py").write_text("def fetch():\n    return get(URL)\n", encoding="utf-8")
    return root


async def test_a_question_is_answered_from_a_tool_round_with_progress_and_a_footer(
    tmp_path: Path, claude: FakeMessagesAPI
) -> None:
    repo(tmp_path)
    async with bot_running(tmp_path, tables(tmp_path)) as rig:
        claude.queue_tool_use("status", {}, "toolu_1")
        thinking = claude.queue_gated_reply("It is **running** and heartbeating.")
        rig.fake.add_message("what is worker doing?", COMMAND_CHAT, USER)
        # The step shows while the model still thinks (later edits may replace a waiting one).
        await rig.fake.wait_for_sent(lambda m: "📊 status" in " ".join(m.texts), 1, 30)
        thinking.set()
        answer = await answer_with(rig, "running")
        assert "<b>running</b>" in answer.text
        assert "in /" in answer.text
        assert "out tokens" in answer.text
        [progress] = rig.fake.sent_matching(lambda m: "🤖" in m.text)
        assert "answered" in progress.text
        assert "1 step" in progress.text
        assert any("📊 status" in text for text in progress.texts)
        [_, second] = claude.message_requests()
        [result] = tool_results(second)
        assert "worker:" in json.dumps(result["content"])
        assert second["messages"][0]["content"] == "what is worker doing?"
        assert any(a["chat_id"] == COMMAND_CHAT for a in rig.fake.chat_actions)  # typing


async def test_an_edit_waits_for_allow_and_is_applied(
    tmp_path: Path, claude: FakeMessagesAPI
) -> None:
    root = repo(tmp_path)
    async with bot_running(tmp_path, tables(tmp_path)) as rig:
        claude.queue_tool_use(
            "edit",
            {
                "file_path": "fetch.py",
                "old_string": "return get(URL)",
                "new_string": "return retry(get, URL)",
            },
            "toolu_e",
        )
        claude.queue_reply("Added a retry.")
        seen = mine(rig)
        rig.fake.add_message("/ask worker add a retry to fetch", COMMAND_CHAT, USER)
        [ask] = await rig.fake.wait_for_sent(
            lambda m: m.message_id not in seen and "wants to edit fetch.py" in m.text, 1, 30
        )
        assert "retry(get, URL)" in ask.text  # the diff is shown
        assert (root / "fetch.py").read_text(encoding="utf-8").endswith("return get(URL)\n")
        rig.fake.add_callback(_button(ask, "Allow once"), COMMAND_CHAT, USER, ask.message_id)
        await answer_with(rig, "Added a retry.")
        assert "retry(get, URL)" in (root / "fetch.py").read_text(encoding="utf-8")
        assert (
            "allowed once"
            in rig.fake.sent_matching(lambda m: m.message_id == ask.message_id)[0].text
        )


@pytest.mark.parametrize("how", ["deny", "timeout"])
async def test_an_edit_denied_or_unanswered_is_not_applied_and_the_agent_is_told(
    tmp_path: Path, claude: FakeMessagesAPI, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    monkeypatch.setenv("AGENT_APPROVAL_SECONDS", "5" if how == "deny" else "0.5")
    root = repo(tmp_path)
    async with bot_running(tmp_path, tables(tmp_path)) as rig:
        claude.queue_tool_use(
            "write", {"file_path": "new.py", "content": "print('x')\n"}, "toolu_w"
        )
        claude.queue_reply("Understood, nothing written.")
        seen = mine(rig)
        rig.fake.add_message("/ask worker write new.py", COMMAND_CHAT, USER)
        [ask] = await rig.fake.wait_for_sent(
            lambda m: m.message_id not in seen and "wants to write new.py" in m.text, 1, 30
        )
        if how == "deny":
            rig.fake.add_callback(_button(ask, "Deny"), COMMAND_CHAT, USER, ask.message_id)
        await answer_with(rig, "nothing written")
        assert not (root / "new.py").exists()
        [_, second] = claude.message_requests()
        [result] = tool_results(second)
        told = json.dumps(result)
        assert result.get("is_error") is True
        assert ("denied" if how == "deny" else "nobody approved it in time") in told


async def test_stop_in_the_middle_of_a_tool_round_ends_the_turn_at_once(
    tmp_path: Path, claude: FakeMessagesAPI
) -> None:
    repo(tmp_path)
    async with bot_running(tmp_path, tables(tmp_path)) as rig:
        claude.queue_tool_use("tail", {"lines": 20}, "toolu_t")
        claude.queue_stall()  # the second round never answers
        rig.fake.add_message("/ask worker why so slow?", COMMAND_CHAT, USER)
        [progress] = await rig.fake.wait_for_sent(lambda m: "🤖" in m.text, 1, 30)
        await _until(lambda: len(claude.message_requests()) >= 2)
        rig.fake.add_callback(
            f"agentstop:{_session(progress)}", COMMAND_CHAT, USER, progress.message_id
        )
        answer = await answer_with(rig, "stopped")
        assert "⏹" in answer.text
        await _until(lambda: "stopped after" in _now(rig, progress).text)


async def test_a_session_continues_after_a_bot_restart_with_its_history(
    tmp_path: Path, claude: FakeMessagesAPI
) -> None:
    repo(tmp_path)
    async with bot_running(tmp_path, tables(tmp_path)) as rig:
        claude.queue_reply("First answer.")
        rig.fake.add_message("/ask worker first question", COMMAND_CHAT, USER)
        await answer_with(rig, "First answer.")
    async with bot_running(tmp_path, tables(tmp_path)) as rig:
        claude.queue_reply("Second answer.")
        rig.fake.add_message("and a follow-up", COMMAND_CHAT, USER)
        await answer_with(rig, "Second answer.")
    last = claude.message_requests()[-1]
    contents = json.dumps(last["messages"])
    assert "first question" in contents
    assert "First answer." in contents
    assert last["messages"][-1]["content"] == "and a follow-up"


async def test_a_strangers_text_is_ignored(tmp_path: Path, claude: FakeMessagesAPI) -> None:
    repo(tmp_path)
    async with bot_running(tmp_path, tables(tmp_path), telegram_allowed_user_ids=[USER]) as rig:
        rig.fake.add_message("what is worker doing?", 999, 999)
        rig.fake.add_message("/ask worker hello", 999, 999)
        rig.fake.add_message("hello from a stranger in an allowed chat", COMMAND_CHAT, 998)
        claude.queue_reply("Probe.")
        # Updates are handled in order: once this later one is answered, the others were seen.
        rig.fake.add_message("/ask worker probe", COMMAND_CHAT, USER)
        await answer_with(rig, "Probe.")
        assert not rig.fake.sent_matching(lambda m: m.chat_id == 999)
        assert not rig.fake.sent_matching(lambda m: "stranger" in m.text)
        [only] = claude.message_requests()
        assert json.dumps(only["messages"]).count("stranger") == 0
        assert only["messages"][-1]["content"] == "probe"


async def test_a_long_answer_is_split_within_telegrams_limit(
    tmp_path: Path, claude: FakeMessagesAPI
) -> None:
    repo(tmp_path)
    long = "\n\n".join(f"Paragraph {n}: " + "word " * 60 for n in range(20))
    assert len(long) > 6000
    async with bot_running(tmp_path, tables(tmp_path)) as rig:
        claude.queue_reply(long)
        seen = mine(rig)
        rig.fake.add_message("/ask worker tell me everything", COMMAND_CHAT, USER)
        await answer_with(rig, "Paragraph 19", within=30)
        parts = rig.fake.sent_matching(lambda m: m.message_id not in seen and "Paragraph" in m.text)
        assert len(parts) >= 2
        assert all(len(part.text) <= 4096 for part in parts)
        assert all(f"Paragraph {n}:" in "".join(p.text for p in parts) for n in range(20))


async def test_no_secret_in_a_file_or_env_reaches_the_endpoint(
    tmp_path: Path, claude: FakeMessagesAPI
) -> None:
    root = repo(tmp_path)
    (root / "settings.txt").write_text(f"password = {SECRET}\nmode = fast\n", encoding="utf-8")
    (root / ".env").write_text(f"DB_PASSWORD={SECRET}\n", encoding="utf-8")
    async with bot_running(tmp_path, tables(tmp_path, env={"DB_PASSWORD": SECRET})) as rig:
        rig.order("worker", print=f"connecting with {SECRET}")
        claude.queue_tool_use("read", {"file_path": "settings.txt"}, "toolu_r1")
        claude.queue_tool_use("read", {"file_path": ".env"}, "toolu_r2")
        claude.queue_tool_use("tail", {"lines": 50}, "toolu_r3")
        claude.queue_reply(f"Done (I saw {SECRET}).")
        rig.fake.add_message("/ask worker read its settings", COMMAND_CHAT, USER)
        answer = await answer_with(rig, "Done")
        sent = json.dumps(claude.requests)
        for secret in (SECRET, TOKEN, API_KEY):
            assert secret not in sent
        assert SECRET not in answer.text
        assert "mode = fast" in sent  # the file was read, redacted
        assert "never read" in sent  # .env was refused


async def test_a_reply_to_an_alert_asks_about_its_workflow_and_a_reply_to_an_answer_continues(
    tmp_path: Path, claude: FakeMessagesAPI
) -> None:
    repo(tmp_path)
    two = [*tables(tmp_path), worker_table(tmp_path, name="other")]
    async with bot_running(tmp_path, two) as rig:
        rig.order("other", error="boom in other")
        [alert] = await rig.alert("boom in other")
        claude.queue_reply("About other.")
        rig.fake.add_message(
            "is this safe to restart?", ALERT_CHAT, USER, reply_to=alert.message_id
        )
        [first] = await rig.fake.wait_for_sent(lambda m: "About other." in m.text, 1, 30)
        assert "session" in first.text
        claude.queue_reply("Still other.")
        rig.fake.add_message("and now?", ALERT_CHAT, USER, reply_to=first.message_id)
        await rig.fake.wait_for_sent(lambda m: "Still other." in m.text, 1, 30)
        systems = [request["system"] for request in claude.message_requests()]
        assert all('"other"' in system for system in systems)
        assert "About other." in json.dumps(claude.message_requests()[-1]["messages"])


async def test_with_several_workflows_and_no_clue_the_bot_asks_which(
    tmp_path: Path, claude: FakeMessagesAPI
) -> None:
    repo(tmp_path)
    two = [*tables(tmp_path), worker_table(tmp_path, name="other")]
    async with bot_running(tmp_path, two) as rig:
        [question] = await rig.send("how are things?")
        assert "Which workflow" in question.text
        claude.queue_reply("Other is fine.")
        rig.fake.add_callback(_button(question, "other"), COMMAND_CHAT, USER, question.message_id)
        await answer_with(rig, "Other is fine.")
        assert claude.message_requests()[0]["messages"][-1]["content"] == "how are things?"


def _button(message: SentMessage, label: str) -> str:
    assert message.reply_markup is not None
    for row in message.reply_markup["inline_keyboard"]:
        for button in row:
            if button["text"] == label:
                return str(button["callback_data"])
    raise AssertionError(f"no button {label!r} on {message.text!r}")


def _session(progress: SentMessage) -> str:
    return _button(progress, "⏹ Stop").split(":", 1)[1]


def _now(rig: BotRig, message: SentMessage) -> SentMessage:
    [found] = rig.fake.sent_matching(lambda m: m.message_id == message.message_id)
    return found


async def _until(condition: Any, within: float = 30) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not condition():
        if loop.time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


async def test_a_proposal_hides_secrets_and_every_decision_is_audited(
    tmp_path: Path, claude: FakeMessagesAPI
) -> None:
    root = repo(tmp_path)
    (root / "conf.py").write_text(f'TOKEN = "{SECRET}"\nRETRIES = 1\n', encoding="utf-8")
    async with bot_running(tmp_path, tables(tmp_path, env={"DB_PASSWORD": SECRET})) as rig:
        edit = {"file_path": "conf.py", "old_string": "RETRIES = 1", "new_string": "RETRIES = 3"}
        claude.queue_tool_use("edit", edit, "toolu_1")
        blank = {"file_path": "conf.py", "old_string": "RETRIES = 3", "new_string": "[REDACTED]"}
        claude.queue_tool_use("edit", blank, "toolu_2")
        claude.queue_reply("Retries raised.")
        seen = mine(rig)
        rig.fake.add_message("/ask worker more retries", COMMAND_CHAT, USER)
        [ask] = await rig.fake.wait_for_sent(
            lambda m: m.message_id not in seen and "wants to edit conf.py" in m.text, 1, 30
        )
        assert "RETRIES = 3" in ask.text
        assert SECRET not in ask.text
        rig.fake.add_callback(
            _button(ask, "Allow for this session"), COMMAND_CHAT, USER, ask.message_id
        )
        await answer_with(rig, "Retries raised.")
        text = (root / "conf.py").read_text(encoding="utf-8")
        assert "RETRIES = 3" in text
        assert SECRET in text
        assert "secret blanked" in json.dumps(claude.message_requests()[-1])
        audit = "\n".join(rig.bot.service.audit.recent("worker", 10))
        assert "/approve → session" in audit
        assert "/agent-action → done" in audit  # the refused blanking was never proposed
        assert "/ask → ok" in audit


async def test_with_auto_approve_none_even_reading_the_log_waits_for_a_tap(
    tmp_path: Path, claude: FakeMessagesAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AGENT_AUTO_APPROVE", "none")
    repo(tmp_path)
    async with bot_running(tmp_path, tables(tmp_path)) as rig:
        claude.queue_tool_use("tail", {"lines": 20}, "toolu_t")
        claude.queue_reply("Not read.")
        seen = mine(rig)
        rig.fake.add_message("/ask worker show the log", COMMAND_CHAT, USER)
        [ask] = await rig.fake.wait_for_sent(
            lambda m: m.message_id not in seen and "wants to read" in m.text, 1, 30
        )
        rig.fake.add_callback(_button(ask, "Deny"), COMMAND_CHAT, USER, ask.message_id)
        await answer_with(rig, "Not read.")
        [result] = tool_results(claude.message_requests()[-1])
        assert result.get("is_error") is True
        assert "denied" in json.dumps(result)


async def test_a_second_message_waits_says_so_and_is_answered_after(
    tmp_path: Path, claude: FakeMessagesAPI
) -> None:
    repo(tmp_path)
    async with bot_running(tmp_path, tables(tmp_path)) as rig:
        claude.queue_tool_use("restart", {}, "toolu_r")
        claude.queue_reply("Left it running.")
        claude.queue_reply("Second one.")
        seen = mine(rig)
        rig.fake.add_message("/ask worker restart it?", COMMAND_CHAT, USER)
        [ask] = await rig.fake.wait_for_sent(
            lambda m: m.message_id not in seen and "wants to restart" in m.text, 1, 30
        )
        [notice] = await rig.send("and another thing")
        assert "still working on your last message" in notice.text
        rig.fake.add_callback(_button(ask, "Deny"), COMMAND_CHAT, USER, ask.message_id)
        await answer_with(rig, "Left it running.")
        await answer_with(rig, "Second one.")
        assert claude.message_requests()[-1]["messages"][-1]["content"] == "and another thing"


async def test_new_starts_afresh_and_sessions_lists_them(
    tmp_path: Path, claude: FakeMessagesAPI
) -> None:
    repo(tmp_path)
    async with bot_running(tmp_path, tables(tmp_path)) as rig:
        claude.queue_reply("One.")
        rig.fake.add_message("first topic", COMMAND_CHAT, USER)
        await answer_with(rig, "One.")
        assert "fresh session" in await rig.ask("/new")
        claude.queue_reply("Two.")
        rig.fake.add_message("second topic", COMMAND_CHAT, USER)
        await answer_with(rig, "Two.")
        assert claude.message_requests()[-1]["messages"] == [
            {"role": "user", "content": "second topic"}
        ]
        listed = await rig.ask("/sessions")
        assert "first topic" in listed
        assert "second topic" in listed


async def test_a_forum_topic_mapped_in_the_toml_picks_its_workflow(
    tmp_path: Path, claude: FakeMessagesAPI
) -> None:
    repo(tmp_path)
    two = [*tables(tmp_path), worker_table(tmp_path, name="other", topic=77)]
    async with bot_running(tmp_path, two) as rig:
        claude.queue_reply("In other's topic.")
        rig.fake.add_message("how is it going?", ALERT_CHAT, USER, thread_id=77)
        [answer] = await rig.fake.wait_for_sent(lambda m: "In other's topic." in m.text, 1, 30)
        assert answer.message_thread_id == 77
        assert '"other"' in claude.message_requests()[0]["system"]


async def test_a_turn_cut_off_by_a_restart_is_announced_in_its_chat(
    tmp_path: Path, claude: FakeMessagesAPI
) -> None:
    repo(tmp_path)
    async with bot_running(tmp_path, tables(tmp_path)) as rig:
        store = rig.bot.service.chat.bridge.store
        session = store.create(f"{COMMAND_CHAT}:0", "worker", "builtin", "a question")
        store.save(session, busy=True)  # as if the bot had been killed in the middle
    async with bot_running(tmp_path, tables(tmp_path)) as rig:
        [notice] = await rig.fake.wait_for_sent(lambda m: "bot restarted while" in m.text, 1, 30)
        assert notice.chat_id == COMMAND_CHAT
        assert session.id in notice.text
