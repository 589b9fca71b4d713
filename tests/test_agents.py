"""Agents as tasks use them: typed replies, validation retries, API errors, offline scripts.

``ClaudeAgent`` runs the real anthropic SDK against ``FakeMessagesAPI`` on
127.0.0.1; ``ClaudeCodeAgent`` runs a fake ``claude`` executable put on PATH.
"""

from __future__ import annotations

import json
import os
import sqlite3
import sys
from collections.abc import Iterator
from pathlib import Path

import anthropic
import pytest
from pydantic import BaseModel

from tests.fakes.messages_api import FakeMessagesAPI
from workflows import (
    AgentError,
    ClaudeAgent,
    ClaudeCodeAgent,
    Context,
    ScriptedAgent,
    Workflow,
    default_agent,
)

VALID = '{"title": "Ship it", "points": 3}'


class Ticket(BaseModel):
    title: str
    points: int


@pytest.fixture
def api() -> Iterator[FakeMessagesAPI]:
    with FakeMessagesAPI() as server:
        yield server


def _client(api: FakeMessagesAPI) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=api.base_url, api_key="test")


def _no_sleep(_seconds: float) -> None:
    """Task backoff that takes no time."""


def test_structured_reply_becomes_the_model(api: FakeMessagesAPI) -> None:
    api.queue_reply(VALID)
    agent = ClaudeAgent(
        system="You write tickets.", model="claude-test", max_tokens=321, client=_client(api)
    )

    ticket = agent.run("Write a ticket", output=Ticket)

    assert ticket == Ticket(title="Ship it", points=3)
    [request] = api.requests
    assert request["system"] == "You write tickets."
    assert (request["model"], request["max_tokens"]) == ("claude-test", 321)
    assert request["messages"] == [{"role": "user", "content": "Write a ticket"}]
    output_format = request["output_config"]["format"]
    assert output_format["type"] == "json_schema"
    assert set(output_format["schema"]["properties"]) == {"title", "points"}


def test_plain_text_reply_without_output_model(api: FakeMessagesAPI) -> None:
    api.queue_reply("just words")
    assert ClaudeAgent(client=_client(api)).run("Say something") == "just words"
    assert "output_config" not in api.requests[0]


def test_client_from_environment(api: FakeMessagesAPI, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_BASE_URL", api.base_url)
    monkeypatch.setenv("ANTHROPIC_API_KEY", "test-key")
    api.queue_reply(VALID)

    assert ClaudeAgent().run("Write a ticket", output=Ticket).points == 3
    assert api.headers[0]["authorization"] == "Bearer test-key"
    assert isinstance(default_agent({}), ClaudeAgent)


def test_invalid_reply_is_asked_for_again(api: FakeMessagesAPI) -> None:
    api.queue_reply('{"title": "no points"}')
    api.queue_reply(VALID)

    assert ClaudeAgent(client=_client(api)).run("Write", output=Ticket).title == "Ship it"
    assert len(api.requests) == 2


def test_invalid_reply_twice_names_the_model(api: FakeMessagesAPI) -> None:
    api.queue_reply('{"title": "no points"}')
    api.queue_reply("not json at all")

    with pytest.raises(AgentError, match=r"Ticket after 2 tries"):
        ClaudeAgent(client=_client(api)).run("Write", output=Ticket)
    assert api.pending == 0


def test_overloaded_is_retried_by_the_sdk(
    api: FakeMessagesAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ANTHROPIC_BASE_URL", api.base_url)
    monkeypatch.setenv("ANTHROPIC_API_KEY", "test")
    api.queue_error(529, headers={"retry-after-ms": "1"})
    api.queue_reply(VALID)

    assert ClaudeAgent(max_retries=1).run("Write", output=Ticket).points == 3
    assert len(api.requests) == 2


def test_server_error_is_retried_by_the_task(api: FakeMessagesAPI, tmp_path: Path) -> None:
    api.queue_error(500)
    api.queue_reply(VALID)
    agent = ClaudeAgent(max_retries=0, client=_client(api))
    wf = Workflow("agentic")

    @wf.task(retries=1)
    def write(ctx: Context) -> Ticket:
        return agent.run("Write", output=Ticket)

    @wf.main
    def main(ctx: Context) -> None:
        write(ctx)

    db = tmp_path / "agentic.db"
    assert wf.run(db=db, sleep=_no_sleep).outcome == "done"
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT attempts FROM task_calls").fetchall() == [(2,)]
    assert len(api.requests) == 2


def test_scripted_replies_follow_occurrences_and_repeat_the_last(tmp_path: Path) -> None:
    agent = ScriptedAgent(
        {
            "ask": [{"title": "first", "points": 1}, lambda prompt: {"title": prompt, "points": 2}],
            "echo": "plain text",
        }
    )
    wf = Workflow("scripted")
    got: list[Ticket] = []

    @wf.task
    def ask(ctx: Context, prompt: str) -> Ticket:
        return agent.run(prompt, output=Ticket)

    @wf.task
    def echo(ctx: Context) -> str:
        return agent.run("anything")

    @wf.main
    def main(ctx: Context) -> None:
        got.extend(ask(ctx, prompt) for prompt in ("one", "two", "three"))
        assert echo(ctx) == "plain text"

    assert wf.run(db=tmp_path / "s.db").outcome == "done"
    assert [(t.title, t.points) for t in got] == [("first", 1), ("two", 2), ("three", 2)]
    assert agent.prompts[0] == ("ask", "one")


def test_scripted_exception_is_raised() -> None:
    agent = ScriptedAgent({"default": RuntimeError("prepared failure")})
    with pytest.raises(RuntimeError, match="prepared failure"):
        agent.run("anything")


def test_scripted_without_reply_for_the_task() -> None:
    with pytest.raises(AgentError, match="no reply for task 'default'"):
        ScriptedAgent({"other": "x"}).run("anything", output=Ticket)


def test_default_agent_is_offline_without_a_key() -> None:
    assert isinstance(default_agent({"default": "x"}), ScriptedAgent)


_FAKE_CLAUDE = """#!{python}
import json, os, sys
from pathlib import Path
Path(os.environ["FAKE_CLAUDE_ARGV"]).write_text(json.dumps(sys.argv[1:]))
if os.environ.get("FAKE_CLAUDE_HANG"):
    import time
    time.sleep(5)
if os.environ.get("FAKE_CLAUDE_FAIL"):
    print("rate limited, try later", file=sys.stderr)
    sys.exit(3)
reply = 'Here: ```json\\n{{"title": "from code", "points": 5}}\\n```'
print(json.dumps({{"type": "result", "is_error": False, "result": reply}}))
"""


@pytest.fixture
def fake_claude(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "claude"
    script.write_text(_FAKE_CLAUDE.format(python=sys.executable))
    script.chmod(0o755)
    argv_file = tmp_path / "argv.json"
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    monkeypatch.setenv("FAKE_CLAUDE_ARGV", str(argv_file))
    return argv_file


def test_claude_code_reply_is_validated(fake_claude: Path, tmp_path: Path) -> None:
    agent = ClaudeCodeAgent(system="Be brief.", model="opus", cwd=tmp_path)

    assert agent.run("Write a ticket", output=Ticket) == Ticket(title="from code", points=5)
    argv = json.loads(fake_claude.read_text())
    assert argv[0] == "-p"
    assert '"points"' in argv[1]  # the schema went into the prompt
    assert argv[2:] == [
        "--output-format",
        "json",
        "--model",
        "opus",
        "--append-system-prompt",
        "Be brief.",
    ]


def test_claude_code_failure_is_an_agent_error(
    fake_claude: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_CLAUDE_FAIL", "1")
    with pytest.raises(AgentError, match="exited 3: rate limited"):
        ClaudeCodeAgent().run("Write", output=Ticket)


def test_claude_code_that_hangs_times_out(
    fake_claude: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_CLAUDE_HANG", "1")
    with pytest.raises(AgentError, match=r"did not answer within 0.3s"):
        ClaudeCodeAgent(timeout=0.3).run("Write")


def test_claude_code_not_on_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    assert ClaudeCodeAgent.available() is False
    with pytest.raises(AgentError, match="not on PATH"):
        ClaudeCodeAgent().run("Write")
