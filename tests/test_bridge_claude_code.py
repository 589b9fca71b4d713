"""The Claude Code backend: a fake `claude` for the stream and the process, the real one offline.

The fake (tests/fakes/claude_cli.py) prints recorded stream-json and records how it was run:
steps reach the observer, the session is resumed, a denied Edit becomes a proposal that is
applied only when allowed, Stop kills the whole process group, the bot token stays out of the
child's env. The proxy is tested against the fake Messages API. The last test installs the
real CLI with npm (once, in a cache dir) and runs a whole turn through it, offline.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import fcntl
import json
import os
import shutil
import socket
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, cast

import anthropic
import httpx2
import psutil
import pytest
from pydantic import SecretStr

from supervisor.agent import claudecode
from supervisor.agent.changes import unified_diff
from supervisor.agent.claudecode import ClaudeCodeRunner
from supervisor.agent.proxy import RedactingProxy
from supervisor.agent.runner import TurnContext
from supervisor.agent.steps import describe
from supervisor.agent.types import Decision, Proposal, Session, Step, TurnResult, Workspace
from supervisor.agentsettings import AgentSettings
from supervisor.secrets import REDACTED, Redactor
from supervisor.spend import Budget, CapReached
from tests.conditions import wait_until
from tests.fakes.claude_cli import (
    FakeClaudeCLI,
    assistant,
    denied,
    init,
    result,
    text,
    tool_use,
)
from tests.fakes.messages_api import FakeMessagesAPI, tool_results
from workflows.prices import price_of

pytestmark = pytest.mark.timeout(60)

KEY = "sk-ant-test-not-a-key"
MODEL = "claude-sonnet-4-6"
BOT_TOKEN = "7123456789:AAFakeTokenForTestsOnly_abcdefghijklmnop"
ENV_VALUE = "hunter2-correct-horse"  # a workflow's env value: a literal the redactor is given
SHAPED = "sk-ant-api03-shapedLikeAKey_0123456789"  # caught by its shape alone
SID, SID2 = "5f0c2f4e-0000-4000-8000-000000000001", "5f0c2f4e-0000-4000-8000-000000000002"
CLI_CACHE = Path.home() / ".cache" / "agent-control-plane" / "claude-code"


class Observer:
    """Records steps and proposals; answers proposals with the given decisions, in order."""

    def __init__(self, *decisions: Decision) -> None:
        self.steps: list[Step] = []
        self.proposals: list[Proposal] = []
        self.decisions = list(decisions)
        self.outcomes: list[tuple[str, str]] = []

    async def step(self, step: Step) -> None:
        self.steps.append(step)

    async def approve(self, proposal: Proposal) -> Decision:
        self.proposals.append(proposal)
        return self.decisions.pop(0)

    async def acted(self, proposal: Proposal, decision: Decision, outcome: str) -> None:
        self.outcomes.append((proposal.summary, outcome))


def context_for(
    cwd: Path,
    observer: Observer,
    session: Session | None = None,
    *,
    base_url: str | None = None,
    cap_usd: float = 5.0,
) -> TurnContext:
    settings = AgentSettings(
        anthropic_api_key=SecretStr(KEY), anthropic_model=MODEL, anthropic_base_url=base_url
    )
    return TurnContext(
        session=session or Session("s1", "chat", "etl", "claude-code"),
        workspace=Workspace("etl", cwd, secrets=(ENV_VALUE,)),
        observer=observer,
        api=cast(Any, None),  # the Claude Code backend does not call the supervisor
        settings=settings,
        redactor=Redactor([BOT_TOKEN, KEY, ENV_VALUE]),
        budget=Budget(price_of(MODEL, {}), cap_usd, 4_096),
    )


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeClaudeCLI:
    fake = FakeClaudeCLI(tmp_path / "bin")
    monkeypatch.setenv("PATH", f"{fake.directory}{os.pathsep}{os.environ['PATH']}")
    return fake


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    cwd = tmp_path / "repo"
    cwd.mkdir()
    (cwd / "api.py").write_text("RETRIES = 1\n\n\ndef run():\n    return RETRIES\n")
    return cwd


def edit_of(cwd: Path, old: str = "RETRIES = 1", new: str = "RETRIES = 3") -> dict[str, Any]:
    return {"file_path": str(cwd / "api.py"), "old_string": old, "new_string": new}


async def test_steps_answer_usage_session_and_resume(
    cli: FakeClaudeCLI, repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", BOT_TOKEN)
    monkeypatch.setenv("SUPERVISOR_DATA_DIR", "/tmp/elsewhere")
    read = {"file_path": str(repo / "api.py")}
    grep = {"pattern": "RETRIES", "path": str(repo)}
    cli.queue(
        init(SID),
        assistant(SID, text("Looking."), tool_use("Read", read, "toolu_1")),
        assistant(SID, tool_use("Grep", grep, "toolu_2")),
        assistant(SID, text("RETRIES is 1.")),
        result(SID, "RETRIES is **1**."),
    )
    cli.queue(init(SID), assistant(SID, text("Still 1.")), result(SID, "Still 1.", cost=None))
    observer = Observer()
    context = context_for(repo, observer)

    answer = await ClaudeCodeRunner().turn("-v what is RETRIES?", context)

    assert observer.steps == [describe("Read", read), describe("Grep", grep)]
    assert str(observer.steps[0]) == "📖 read api.py"
    assert answer.text == "RETRIES is **1**."
    assert answer.ended is None
    assert (answer.usage.model, answer.usage.input_tokens, answer.usage.output_tokens) == (
        MODEL,
        150,  # input, cache reads and cache writes
        40,
    )
    assert answer.usage.cost_usd == pytest.approx(0.0123)
    assert (context.budget.tally.input_tokens, context.budget.tally.output_tokens) == (150, 40)
    assert context.session.resume_id == SID
    [first] = cli.calls()
    assert first.prompt == "-v what is RETRIES?"  # after `--`: not read as an option
    assert first.cwd == str(repo)
    assert first.option("--resume") is None
    assert first.option("--model") == MODEL
    assert first.option("--permission-mode") == "dontAsk"
    assert first.option("--setting-sources") == ""
    assert "Bash" in (first.option("--disallowedTools") or "")
    deny = json.loads(first.option("--settings") or "{}")["permissions"]["deny"]
    assert {"Read(**/.env*)", "Read(**/*.pem)", "Read(**/*token*)", "Read(**/*KEY*)"} <= set(deny)
    assert "TELEGRAM_BOT_TOKEN" not in first.env
    assert not [name for name in first.env if name.startswith("SUPERVISOR_")]
    assert first.env["ANTHROPIC_API_KEY"] == KEY
    assert first.env["ANTHROPIC_BASE_URL"].startswith("http://127.0.0.1:")
    assert BOT_TOKEN not in json.dumps(first.env)

    again = await ClaudeCodeRunner().turn("and now?", context)

    assert again.text == "Still 1."
    assert cli.calls()[1].option("--resume") == SID
    # Priced by us (workflows.usage): 100 in, 20 cache writes at 1.25×, 30 reads at 0.1×.
    assert again.usage.cost_usd == pytest.approx((100 + 20 * 1.25 + 30 * 0.1) * 3e-6 + 40 * 15e-6)


@pytest.mark.parametrize(
    ("decision", "applied", "told"),
    [
        ("once", True, "edit api.py: done"),
        ("deny", False, "edit api.py: not done, the person denied it"),
        ("timeout", False, "edit api.py: not done, nobody approved it in time"),
    ],
)
async def test_a_denied_edit_becomes_a_proposal(
    cli: FakeClaudeCLI, repo: Path, decision: Decision, applied: bool, told: str
) -> None:
    before = (repo / "api.py").read_text()
    edit = edit_of(repo)
    cli.queue(
        init(SID),
        assistant(SID, tool_use("Read", {"file_path": edit["file_path"]}, "toolu_1")),
        assistant(SID, tool_use("Edit", edit, "toolu_2")),
        result(SID, "I want RETRIES = 3.", denials=[denied("Edit", edit, "toolu_2")]),
    )
    cli.queue(init(SID), result(SID, "Done." if applied else "Left as it was."))
    observer = Observer(decision)

    answer = await ClaudeCodeRunner().turn("raise RETRIES to 3", context_for(repo, observer))

    after = before.replace("RETRIES = 1", "RETRIES = 3")
    [proposal] = observer.proposals
    assert (proposal.workflow, proposal.kind, proposal.subject) == ("etl", "edit", "api.py")
    assert proposal.diff == unified_diff(before, after, "api.py")
    assert "-RETRIES = 1\n+RETRIES = 3\n" in proposal.diff
    assert (repo / "api.py").read_text() == (after if applied else before)
    _first, resumed = cli.calls()
    assert resumed.option("--resume") == SID
    assert told in resumed.prompt
    assert answer.text == ("Done." if applied else "Left as it was.")
    assert describe("Edit", edit) in observer.steps


async def test_allowed_for_the_session_applies_later_edits_unasked(
    cli: FakeClaudeCLI, repo: Path
) -> None:
    first_edit = edit_of(repo)
    second_edit = edit_of(repo, "return RETRIES", "return RETRIES * 2")
    new_file = {"file_path": "notes.md", "content": "raised RETRIES\n"}
    cli.queue(
        init(SID),
        result(
            SID, "Two edits.", denials=[denied("Edit", first_edit), denied("Edit", second_edit)]
        ),
    )
    cli.queue(init(SID), result(SID, "And a note.", denials=[denied("Write", new_file)]))
    cli.queue(init(SID), result(SID, "All done."))
    observer = Observer("session", "once")
    context = context_for(repo, observer)

    answer = await ClaudeCodeRunner().turn("fix it", context)

    assert answer.text == "All done."
    assert [p.summary for p in observer.proposals] == ["edit api.py", "write notes.md"]
    assert context.session.allowed == {"edit"}
    assert "RETRIES = 3" in (repo / "api.py").read_text()
    assert "return RETRIES * 2" in (repo / "api.py").read_text()
    assert (repo / "notes.md").read_text() == "raised RETRIES\n"
    prompts = [call.prompt for call in cli.calls()[1:]]
    assert prompts[0].count(": done") == 2
    assert "write notes.md: done" in prompts[1]


async def test_refused_changes_and_other_tools_are_told_without_asking(
    cli: FakeClaudeCLI, repo: Path, tmp_path: Path
) -> None:
    (repo / ".env").write_text(f"PASSWORD={ENV_VALUE}\n")
    denials = [
        denied("Write", {"file_path": str(repo / ".env"), "content": "PASSWORD=x\n"}),
        denied("Edit", {**edit_of(repo), "old_string": "nowhere in the file"}),
        denied("Write", {"file_path": str(tmp_path / "outside.py"), "content": "x"}),
        denied("Bash", {"command": "rm -rf /"}),
    ]
    cli.queue(init(SID), result(SID, "Tried.", denials=denials))
    cli.queue(init(SID), result(SID, "I could not change anything."))
    observer = Observer()

    answer = await ClaudeCodeRunner().turn("change things", context_for(repo, observer))

    assert observer.proposals == []
    assert answer.text == "I could not change anything."
    prompt = cli.calls()[1].prompt
    assert "may hold secrets and is never touched" in prompt
    assert "the text to replace was not found" in prompt
    assert "outside the workflow's directory" in prompt
    assert "bash: not available here" in prompt
    assert (repo / ".env").read_text() == f"PASSWORD={ENV_VALUE}\n"
    assert not (tmp_path / "outside.py").exists()


async def test_resumptions_stop_at_max_rounds(cli: FakeClaudeCLI, repo: Path) -> None:
    for n in range(3):
        edit = edit_of(repo, f"RETRIES = {n + 1}", f"RETRIES = {n + 2}")
        cli.queue(init(SID), result(SID, f"round {n}", denials=[denied("Edit", edit)]))
    observer = Observer("session")
    context = dataclasses.replace(context_for(repo, observer), max_rounds=2)

    answer = await ClaudeCodeRunner().turn("keep going", context)

    assert answer.text == "round 2"
    assert len(cli.calls()) == 3
    assert cli.calls()[0].option("--max-turns") == "2"
    assert "RETRIES = 3" in (repo / "api.py").read_text()  # the third round's edit is not made


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@pytest.mark.parametrize("ignore_term", [False, True])
async def test_stop_kills_the_whole_process_group(
    cli: FakeClaudeCLI, repo: Path, monkeypatch: pytest.MonkeyPatch, ignore_term: bool
) -> None:
    monkeypatch.setattr(claudecode, "GRACE_SECONDS", 0.2)
    cli.queue(
        init(SID),
        assistant(SID, tool_use("Read", {"file_path": "api.py"})),
        hang=True,
        ignore_term=ignore_term,
    )
    observer = Observer()
    task = asyncio.create_task(ClaudeCodeRunner().turn("look", context_for(repo, observer)))
    await wait_until(lambda: bool(observer.steps) and cli.pids() is not None)
    pids = cli.pids()
    assert pids is not None
    assert not gone(pids["fake"])
    assert not gone(pids["child"])

    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    assert gone(pids["fake"])  # reaped before the cancellation went on
    await wait_until(lambda: gone(pids["child"]))
    assert observer.steps == [describe("Read", {"file_path": "api.py"})]


async def test_a_failed_run_ends_the_turn_with_what_is_known(
    cli: FakeClaudeCLI, repo: Path
) -> None:
    cli.queue(
        init(SID),
        assistant(SID, text("Reading the log first.")),
        exit_code=2,
        stderr=f"Error: invalid key {SHAPED}\n  at boom (cli.js:1)\n",
    )
    cli.queue("this is not json", "{still not")
    cli.queue(
        init(SID),
        result(
            SID,
            "API Error: 529 overloaded",
            subtype="success",
            is_error=True,
            cost=0.0,
            usage={"input_tokens": 0, "output_tokens": 0},
        ),
    )
    context = context_for(repo, Observer())
    runner = ClaudeCodeRunner()

    crashed = await runner.turn("why?", context)
    garbled = await runner.turn("why?", context)
    failed = await runner.turn("why?", context)
    missing = await ClaudeCodeRunner(str(repo / "no-such-claude")).turn("why?", context)

    assert crashed.text == "Reading the log first."
    assert crashed.ended is not None
    assert "exited with status 2" in crashed.ended
    assert "Error: invalid key" in crashed.ended
    assert REDACTED in crashed.ended
    assert SHAPED not in crashed.ended
    assert garbled.ended == "Claude Code's output could not be read: this is not json"
    assert failed.ended == "Claude Code failed: API Error: 529 overloaded"
    assert missing.ended is not None
    assert missing.ended.startswith("Claude Code could not start")


async def test_a_session_claude_code_lost_starts_afresh(cli: FakeClaudeCLI, repo: Path) -> None:
    lost = result(SID, "", subtype="error_during_execution", is_error=True)
    lost["errors"] = [f"No conversation found with session ID: {SID}"]
    cli.queue(init(SID), lost, exit_code=1)
    cli.queue(init(SID2), assistant(SID2, text("Fresh.")), result(SID2, "Fresh."))
    context = context_for(repo, Observer())
    context.session.resume_id = SID

    answer = await ClaudeCodeRunner().turn("hello again", context)

    assert answer.text == "Fresh."
    assert answer.ended is None
    assert context.session.resume_id == SID2
    first, second = cli.calls()
    assert first.option("--resume") == SID
    assert second.option("--resume") is None


async def test_a_spent_budget_refuses_to_start(cli: FakeClaudeCLI, repo: Path) -> None:
    with pytest.raises(CapReached):
        await ClaudeCodeRunner().turn("hi", context_for(repo, Observer(), cap_usd=0.001))
    assert cli.calls() == []


# The proxy.


@pytest.fixture
def messages_api() -> Iterator[FakeMessagesAPI]:
    with FakeMessagesAPI() as server:
        yield server


@pytest.fixture
async def proxy(messages_api: FakeMessagesAPI) -> AsyncIterator[RedactingProxy]:
    redact = Redactor([ENV_VALUE]).redact
    async with RedactingProxy(messages_api.base_url, redact, timeout=10) as opened:
        yield opened


async def test_the_proxy_redacts_bodies_and_passes_headers(
    proxy: RedactingProxy, messages_api: FakeMessagesAPI
) -> None:
    messages_api.queue_reply("fine")
    body = {
        "model": MODEL,
        "max_tokens": 100,
        "messages": [{"role": "user", "content": f"db password {ENV_VALUE}, key {SHAPED}"}],
    }
    async with httpx2.AsyncClient() as client:
        reply = await client.post(
            f"{proxy.url}/v1/messages?beta=true", json=body, headers={"x-api-key": KEY}
        )
    assert reply.status_code == 200
    assert reply.json()["content"] == [{"type": "text", "text": "fine"}]
    [sent] = messages_api.requests
    assert sent["messages"][0]["content"] == f"db password {REDACTED}, key {REDACTED}"
    assert sent["model"] == MODEL  # structure is left alone
    assert messages_api.headers[0]["x-api-key"] == KEY  # the key reaches upstream
    assert messages_api.paths == ["/v1/messages"]


async def test_a_stream_passes_the_proxy_intact(
    proxy: RedactingProxy, messages_api: FakeMessagesAPI
) -> None:
    messages_api.queue_message(
        [
            {"type": "text", "text": "Reading."},
            {"type": "tool_use", "id": "toolu_1", "name": "Read", "input": {"file_path": "api.py"}},
        ],
        "tool_use",
    )
    client = anthropic.AsyncAnthropic(base_url=proxy.url, api_key=KEY, max_retries=0)
    async with client.messages.stream(
        model=MODEL, max_tokens=100, messages=[{"role": "user", "content": f"hi {ENV_VALUE}"}]
    ) as stream:
        message = await stream.get_final_message()
    await client.close()
    assert message.stop_reason == "tool_use"
    text_block, tool_block = message.content
    assert isinstance(text_block, anthropic.types.TextBlock)
    assert text_block.text == "Reading."
    assert isinstance(tool_block, anthropic.types.ToolUseBlock)
    assert tool_block.input == {"file_path": "api.py"}
    assert ENV_VALUE not in json.dumps(messages_api.requests)


async def test_the_proxy_streams_each_event_as_it_comes() -> None:
    """An upstream that holds its answer open after the first event: the event arrives first."""
    release = asyncio.Event()
    first = b"event: message_start\ndata: {}\n\n"
    rest = b"event: message_stop\ndata: {}\n\n"

    async def upstream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
            b"transfer-encoding: chunked\r\n\r\n" + b"%x\r\n%s\r\n" % (len(first), first)
        )
        await writer.drain()
        await release.wait()
        writer.write(b"%x\r\n%s\r\n0\r\n\r\n" % (len(rest), rest))
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(upstream, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with (
        server,
        RedactingProxy(f"http://127.0.0.1:{port}", Redactor().redact, timeout=10) as proxy,
        httpx2.AsyncClient() as client,
        client.stream("POST", f"{proxy.url}/v1/messages", json={"stream": True}) as reply,
    ):
        chunks = reply.aiter_raw()
        received = await anext(chunks)
        assert not release.is_set()
        release.set()
        async for chunk in chunks:
            received += chunk
        assert reply.headers["content-type"] == "text/event-stream"
    assert received == first + rest


async def test_the_proxy_answers_an_unreachable_upstream_as_an_api_error() -> None:
    with contextlib.closing(socket.socket()) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # nothing listens there once closed
    async with (
        RedactingProxy(f"http://127.0.0.1:{port}", Redactor().redact, timeout=5) as proxy,
        httpx2.AsyncClient() as client,
    ):
        reply = await client.post(f"{proxy.url}/v1/messages", json={})
    assert reply.status_code == 502
    assert reply.json()["error"]["message"].startswith("proxy: upstream unreachable")


# The real CLI.


@pytest.fixture(scope="session")
def claude_code() -> Path:
    """The real `claude`, installed with npm once into a cache dir that later runs reuse."""
    npm = shutil.which("npm")
    if npm is None:
        pytest.skip("npm is not installed: the real Claude Code CLI cannot be installed")
    CLI_CACHE.mkdir(parents=True, exist_ok=True)
    executable = CLI_CACHE / "node_modules" / ".bin" / "claude"
    with (CLI_CACHE / ".lock").open("w") as lock:  # pytest -n: one worker installs
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not _runs(executable):
            try:
                install = subprocess.run(
                    [
                        npm,
                        "install",
                        "--no-audit",
                        "--no-fund",
                        "--prefix",
                        str(CLI_CACHE),
                        "@anthropic-ai/claude-code",
                    ],
                    capture_output=True,
                    text=True,
                    timeout=280,
                    check=False,
                )
            except subprocess.TimeoutExpired:
                pytest.skip("installing @anthropic-ai/claude-code with npm took over 280 s")
            if install.returncode != 0 or not _runs(executable):
                tail = " ".join((install.stderr or install.stdout).split())[-300:]
                pytest.skip(f"could not install @anthropic-ai/claude-code with npm: {tail}")
    return executable


def _runs(executable: Path) -> bool:
    if not executable.exists():
        return False
    try:
        done = subprocess.run(
            [str(executable), "--version"], capture_output=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


@pytest.mark.timeout(300)  # the first run installs the CLI; later ones take seconds
async def test_the_real_cli_offline(
    claude_code: Path,
    messages_api: FakeMessagesAPI,
    repo: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))  # the CLI keeps its sessions and config there
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", BOT_TOKEN)
    (repo / "settings.py").write_text(
        f'DSN = "postgres://etl:{ENV_VALUE}@db/etl"\nKEY = "{SHAPED}"\n'
    )
    (repo / ".env").write_text("PLAIN=swordfish\n")
    settings_py = str((repo / "settings.py").resolve())
    api_py = str((repo / "api.py").resolve())
    messages_api.queued_model = MODEL
    messages_api.default_reply = "(an answer the test did not script)"
    messages_api.queue_tool_use("Read", {"file_path": settings_py}, "toolu_1")
    messages_api.queue_tool_use("Read", {"file_path": str((repo / ".env").resolve())}, "toolu_2")
    messages_api.queue_tool_use("Read", {"file_path": api_py}, "toolu_3")
    edit = {"file_path": api_py, "old_string": "RETRIES = 1", "new_string": "RETRIES = 3"}
    messages_api.queue_tool_use("Edit", edit, "toolu_4")
    messages_api.queue_reply("I asked to set RETRIES to 3.")
    messages_api.queue_reply("RETRIES is 3 now.")  # after the resume
    observer = Observer("once")
    context = context_for(repo, observer, base_url=messages_api.base_url)

    answer: TurnResult = await ClaudeCodeRunner(str(claude_code)).turn("raise RETRIES", context)

    if not messages_api.requests:
        pytest.skip(f"the real CLI made no request offline here: {answer.ended}")
    assert answer.ended is None, answer.ended
    assert answer.text == "RETRIES is 3 now."
    assert [str(step) for step in observer.steps][:4] == [
        "📖 read settings.py",
        "📖 read .env",
        "📖 read api.py",
        "✏️ edit api.py",
    ]
    assert [p.summary for p in observer.proposals] == ["edit api.py"]
    assert "RETRIES = 3" in (repo / "api.py").read_text()
    assert context.session.resume_id is not None
    assert answer.usage.input_tokens > 0
    bodies = [json.dumps(request) for request in messages_api.requests]
    for secret in (ENV_VALUE, SHAPED, KEY, BOT_TOKEN, "swordfish"):
        assert not [body for body in bodies if secret in body], secret
    results = {r["tool_use_id"]: json.dumps(r) for r in tool_results(messages_api.requests[-1])}
    assert REDACTED in results["toolu_1"]  # the file was read, and redacted on its way out
    assert "denied" in results["toolu_2"]  # the deny rule: .env is never read
    assert messages_api.headers[0]["x-api-key"] == KEY
    assert ": done" in json.dumps(messages_api.requests[-1]["messages"][-1])
