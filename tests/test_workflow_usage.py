"""A workflow's agents leave their usage in the state table: tokens and USD, cumulative per run.

``ClaudeAgent`` runs the real SDK against the stand-in Messages endpoint
over HTTP, in a ``python -m workflows run`` child process and in runs made
in this process; ``ClaudeCodeAgent`` runs the fake ``claude``, and the real
CLI offline where npm can install it. Prices: claude-sonnet-4 at $3/$15
and claude-haiku-4-5 at $1/$5 per million tokens, cache writes at 1.25 and
cache reads at 0.1 times the input price.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import closing
from pathlib import Path

import anthropic
import pytest
from anthropic import beta_async_tool
from pydantic import BaseModel

from tests.fakes.claude_cli import FakeClaudeCLI, result
from tests.fakes.messages_api import JSON, FakeMessagesAPI, _Reply
from tests.test_bridge_claude_code import claude_code  # noqa: F401  (the real CLI, installed once)
from workflows import AgentError, ClaudeAgent, ClaudeCodeAgent, Context, Workflow
from workflows import state as state_module
from workflows.contract import COST_KEY, INPUT_TOKENS_KEY, OUTPUT_TOKENS_KEY, STATUS_KEY
from workflows.prices import price_of, prices_from_env
from workflows.usage import Usage, current_meter, priced

pytestmark = pytest.mark.timeout(60)

SID = "5f0c2f4e-0000-4000-8000-000000000001"
Keys = tuple[str | None, str | None, str | None]  # input tokens, output tokens, USD


def usage_keys(db: Path) -> Keys:
    with sqlite3.connect(db) as conn:
        stored = dict(conn.execute("SELECT key, value FROM state").fetchall())
    return stored.get(INPUT_TOKENS_KEY), stored.get(OUTPUT_TOKENS_KEY), stored.get(COST_KEY)


def state_value(db: Path, key: str) -> str | None:
    with sqlite3.connect(db) as conn:
        row = conn.execute("SELECT value FROM state WHERE key = ?", (key,)).fetchone()
    return row[0] if row else None


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeMessagesAPI]:
    with FakeMessagesAPI() as server:
        monkeypatch.setenv("ANTHROPIC_BASE_URL", server.base_url)
        monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-test")
        yield server


def run_one_task(db: Path, work: Callable[[], object]) -> str:
    """Run a workflow whose one task does ``work``, in this process; the run's outcome."""
    wf = Workflow("metered")

    @wf.task
    def step(ctx: Context) -> str:
        return str(work())

    @wf.main
    def main(ctx: Context) -> None:
        step(ctx)

    return wf.run(db=db, sleep=lambda _seconds: None).outcome


# ClaudeAgent.

_TWO_CALLS = """
from workflows import ClaudeAgent, Context, Workflow

wf = Workflow("metered")
agent = ClaudeAgent(max_retries=0)


@wf.task
def plan(ctx: Context) -> str:
    return agent.run("Plan the endpoints")


@wf.task
def build(ctx: Context, plan: str) -> str:
    return agent.run(f"Build {plan}")


@wf.main
def main(ctx: Context) -> None:
    build(ctx, plan(ctx))
"""


def test_a_workflow_process_records_its_agents_usage(api: FakeMessagesAPI, tmp_path: Path) -> None:
    api.queue_reply("GET /items", input_tokens=1000, output_tokens=500)
    api.queue_reply("built", input_tokens=1000, output_tokens=500)
    file = tmp_path / "metered.py"
    file.write_text(_TWO_CALLS)
    db = tmp_path / "metered.db"

    done = subprocess.run(
        [sys.executable, "-m", "workflows", "run", str(file), "--db", str(db)],
        env=os.environ.copy(),  # ANTHROPIC_BASE_URL and the fake key, from the fixture
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )

    assert done.returncode == 0, done.stdout + done.stderr
    assert len(api.requests) == 2
    assert state_value(db, STATUS_KEY) == "done"
    # 2 x (1000 x $3 + 500 x $15) per million tokens
    assert usage_keys(db) == ("2000", "1000", "0.021000")


def test_every_round_of_a_tool_conversation_counts_while_it_runs(
    api: FakeMessagesAPI, tmp_path: Path
) -> None:
    db = tmp_path / "metered.db"
    seen: list[Keys] = []

    @beta_async_tool
    async def peek() -> str:
        """Look at the state table."""
        seen.append(usage_keys(db))
        return "looked"

    api.queue_message(
        [{"type": "tool_use", "id": "toolu_1", "name": "peek", "input": {}}], "tool_use", 1000, 100
    )
    api.queue_reply("done", input_tokens=2000, output_tokens=300)
    agent = ClaudeAgent(tools=[peek], max_retries=0)

    assert run_one_task(db, lambda: agent.run("Look, then stop")) == "done"

    assert seen == [("1000", "100", "0.004500")]  # the first round, before the second was asked
    assert usage_keys(db) == ("3000", "400", "0.015000")


class Ticket(BaseModel):
    title: str
    points: int


def test_a_reply_that_fails_validation_still_counts(api: FakeMessagesAPI, tmp_path: Path) -> None:
    api.queue_reply('{"title": "no points"}', input_tokens=1000, output_tokens=500)
    api.queue_reply('{"title": "Ship it", "points": 3}', input_tokens=1000, output_tokens=500)
    agent = ClaudeAgent(validation_retries=1, max_retries=0)
    db = tmp_path / "metered.db"

    assert run_one_task(db, lambda: agent.run("Write a ticket", output=Ticket)) == "done"

    assert usage_keys(db) == ("2000", "1000", "0.021000")


class CachingMessagesAPI(FakeMessagesAPI):
    """The stand-in endpoint, its replies reporting prompt-cache tokens too."""

    def handle(self, path: str, request: JSON, headers: dict[str, str]) -> _Reply:
        reply = super().handle(path, request, headers)
        if reply.status == 200:
            reply.body["usage"].update(
                cache_creation_input_tokens=2000, cache_read_input_tokens=20000
            )
        return reply


def test_cache_writes_and_reads_are_priced_by_their_multipliers(tmp_path: Path) -> None:
    with CachingMessagesAPI() as api:
        api.queue_reply("cached", input_tokens=1000, output_tokens=500)
        client = anthropic.Anthropic(base_url=api.base_url, api_key="sk-test", max_retries=0)
        agent = ClaudeAgent(model="claude-sonnet-4-6", client=client)
        db = tmp_path / "metered.db"

        assert run_one_task(db, lambda: agent.run("Use the cache")) == "done"

    # $3 x (1000 + 2000 x 1.25 + 20000 x 0.1) + $15 x 500, per million tokens
    assert usage_keys(db) == ("23000", "500", "0.024000")


def priced_call(tmp_path: Path, api: FakeMessagesAPI) -> Keys:
    """The keys after one 1000 in / 500 out call on claude-sonnet-4-6 in a run."""
    api.queue_reply("priced", input_tokens=1000, output_tokens=500)
    agent = ClaudeAgent(model="claude-sonnet-4-6", max_retries=0)
    db = tmp_path / "metered.db"
    assert run_one_task(db, lambda: agent.run("What does it cost?")) == "done"
    return usage_keys(db)


def test_agent_prices_override_the_table(
    api: FakeMessagesAPI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AGENT_PRICES", '{"claude-sonnet-4": {"input": 1, "output": 2}}')
    assert priced_call(tmp_path, api) == ("1000", "500", "0.002000")


@pytest.mark.parametrize(
    "prices",
    ['{"claude-sonnet-4": {"input": 1, "output":', '{"claude-sonnet-4": {"input": -1}}'],
    ids=["not-json", "not-a-price"],
)
def test_a_bad_agent_prices_is_warned_about_and_the_table_used(
    api: FakeMessagesAPI,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    prices: str,
) -> None:
    monkeypatch.setenv("AGENT_PRICES", prices)
    assert priced_call(tmp_path, api) == ("1000", "500", "0.010500")
    assert "AGENT_PRICES is not valid" in caplog.text


def test_a_failed_state_write_does_not_fail_the_agent_call(
    api: FakeMessagesAPI,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(state_module, "BUSY_TIMEOUT_SECONDS", 0.05)
    api.queue_reply("first", input_tokens=1000, output_tokens=500)
    api.queue_reply("second", input_tokens=1000, output_tokens=500)
    agent = ClaudeAgent(max_retries=0)
    db = tmp_path / "metered.db"
    answers: list[str] = []
    while_held: list[Keys] = []

    def while_locked() -> None:
        with closing(sqlite3.connect(db, isolation_level=None)) as holder:
            holder.execute("BEGIN IMMEDIATE")  # another writer holds the database
            answers.append(agent.run("One"))
            while_held.append(usage_keys(db))
            holder.execute("ROLLBACK")
        answers.append(agent.run("Two"))

    assert run_one_task(db, while_locked) == "done"

    assert answers == ["first", "second"]
    assert while_held == [("0", "0", "0.000000")]  # the write did not land
    assert "state write agent.input_tokens, agent.output_tokens, agent.cost_usd failed" in (
        caplog.text
    )
    assert usage_keys(db) == ("2000", "1000", "0.021000")  # the next write carries both


def test_an_agent_called_from_a_thread_of_a_task_is_counted(
    api: FakeMessagesAPI, tmp_path: Path
) -> None:
    api.queue_reply("from a thread", input_tokens=1000, output_tokens=500)
    agent = ClaudeAgent(max_retries=0)
    answers: list[str] = []

    def in_a_thread() -> None:
        worker = threading.Thread(target=lambda: answers.append(agent.run("Work")))
        worker.start()
        worker.join()

    assert run_one_task(tmp_path / "metered.db", in_a_thread) == "done"

    assert answers == ["from a thread"]
    assert usage_keys(tmp_path / "metered.db") == ("1000", "500", "0.010500")


def test_an_agent_outside_a_run_records_nothing(api: FakeMessagesAPI, tmp_path: Path) -> None:
    api.queue_reply("no run here", input_tokens=1000, output_tokens=500)

    assert ClaudeAgent(max_retries=0).run("Hello") == "no run here"

    assert current_meter() is None
    assert list(tmp_path.rglob("*.db")) == []


# ClaudeCodeAgent.

_RESUMABLE = """
import os
import signal
from pathlib import Path

from workflows import ClaudeCodeAgent, Context, Workflow

HERE = Path(__file__).parent
wf = Workflow("resumable")
agent = ClaudeCodeAgent(executable={executable!r})


@wf.task
def first(ctx: Context) -> str:
    return agent.run("One")


@wf.task
def second(ctx: Context, previous: str) -> str:
    answer = agent.run("Two")
    if not (HERE / "marker").exists():
        os.kill(os.getpid(), signal.SIGKILL)  # a crash after the call was paid for
    return previous + answer


@wf.main
def main(ctx: Context) -> None:
    second(ctx, first(ctx))
"""

SONNET_CALL = {"claude-sonnet-4-6": {"inputTokens": 1000, "outputTokens": 500}}


def test_a_resumed_run_continues_its_totals_and_a_new_run_starts_at_0(tmp_path: Path) -> None:
    cli = FakeClaudeCLI(tmp_path / "bin")
    for _ in range(5):
        cli.queue(result(SID, "ok", model_usage=SONNET_CALL))
    file = tmp_path / "resumable.py"
    file.write_text(_RESUMABLE.format(executable=str(cli.executable)))
    db = tmp_path / "resumable.db"

    def start() -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-m", "workflows", "run", str(file), "--db", str(db)]
        return subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)

    crashed = start()
    assert crashed.returncode == -9, crashed.stdout + crashed.stderr
    assert usage_keys(db) == ("2000", "1000", "0.021000")

    (tmp_path / "marker").touch()
    resumed = start()
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "resumed" in resumed.stdout
    assert usage_keys(db) == ("3000", "1500", "0.031500")  # `second` was paid for twice

    fresh = start()  # the last run is done: this one is new
    assert fresh.returncode == 0, fresh.stdout + fresh.stderr
    assert usage_keys(db) == ("2000", "1000", "0.021000")
    assert len(cli.calls()) == 5


@pytest.mark.parametrize(
    ("line", "model", "keys"),
    [
        (  # each model of modelUsage by our table, not by the CLI's costUSD
            result(
                SID,
                "ok",
                cost=99.0,
                model_usage={
                    "claude-sonnet-4-6": {
                        "inputTokens": 1000,
                        "outputTokens": 500,
                        "cacheCreationInputTokens": 2000,
                        "cacheReadInputTokens": 20000,
                        "costUSD": 98.0,
                    },
                    "claude-haiku-4-5-20251001": {
                        "inputTokens": 200,
                        "outputTokens": 100,
                        "costUSD": 1.0,
                    },
                },
            ),
            None,
            ("23200", "600", "0.024700"),
        ),
        # usage (100 in, 20 cache writes, 30 cache reads, 40 out) and the CLI's own cost
        (result(SID, "ok", cost=0.0123), None, ("150", "40", "0.012300")),
        # neither: usage priced as the agent's model, else as DEFAULT_MODEL
        (result(SID, "ok", cost=None), "claude-haiku-4-5", ("150", "40", "0.000328")),
        (result(SID, "ok", cost=None), None, ("150", "40", "0.000984")),
    ],
    ids=["model-usage", "total-cost", "agent-model", "default-model"],
)
def test_claude_code_usage_is_priced_by_our_table(
    tmp_path: Path, line: JSON, model: str | None, keys: Keys
) -> None:
    cli = FakeClaudeCLI(tmp_path / "bin")
    cli.queue(line)
    agent = ClaudeCodeAgent(model=model, executable=str(cli.executable))
    db = tmp_path / "metered.db"

    assert run_one_task(db, lambda: agent.run("Work")) == "done"

    assert usage_keys(db) == keys


def test_a_claude_code_run_that_failed_still_counts(tmp_path: Path) -> None:
    cli = FakeClaudeCLI(tmp_path / "bin")
    spent = result(SID, "max turns", subtype="error_max_turns", is_error=True, cost=0.5)
    cli.queue(spent, exit_code=1)
    agent = ClaudeCodeAgent(executable=str(cli.executable))
    raised: list[AgentError] = []

    def work() -> None:
        try:
            agent.run("Work")
        except AgentError as exc:
            raised.append(exc)

    assert run_one_task(tmp_path / "metered.db", work) == "done"

    assert [str(exc) for exc in raised] == ["claude reported an error: max turns"]
    assert usage_keys(tmp_path / "metered.db") == ("150", "40", "0.500000")


@pytest.mark.timeout(300)  # the first run installs the CLI; later ones take seconds
def test_the_real_claude_code_cli_usage_is_recorded(
    claude_code: Path,  # noqa: F811
    api: FakeMessagesAPI,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))  # the CLI keeps its sessions and config there
    monkeypatch.setenv("AGENT_PRICES", '{"claude-sonnet-4-6": {"input": 1, "output": 2}}')
    api.queued_model = "claude-sonnet-4-6"
    api.default_reply = "(a call the test did not script)"  # 10 in, 5 out
    api.queue_reply("hello from the stand-in", input_tokens=1000, output_tokens=500)
    agent = ClaudeCodeAgent(model="claude-sonnet-4-6", cwd=home, executable=str(claude_code))
    answers: list[str] = []
    db = tmp_path / "metered.db"

    outcome = run_one_task(db, lambda: answers.append(agent.run("Say hello")))

    if not api.message_requests():
        pytest.skip("the real CLI made no request offline here")
    assert outcome == "done"
    assert answers == ["hello from the stand-in"]
    queued = iter([(1000, 500)])  # the first request for the queued model gets it
    expected = Usage()
    for request in api.message_requests():
        served = next(queued, (10, 5)) if request["model"] == api.queued_model else (10, 5)
        expected += priced(price_of(request["model"], prices_from_env()), *served)
    assert usage_keys(db) == (
        str(expected.input_tokens),
        str(expected.output_tokens),
        f"{expected.cost_usd:.6f}",
    )
    assert expected.cost_usd != pytest.approx(0.0105)  # AGENT_PRICES, not the CLI's own price
