"""The bridge's bounds and memory: one turn per session, caps, compaction, restarts, console.

The engine (``supervisor.agent.bridge``) over a real supervisor and the stand-in
Messages endpoint; the console over real workflows with the offline agent.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from bot.agent.progress import STALL_SECONDS, Progress
from supervisor.agent import builtin
from supervisor.agent.bridge import SESSION_SHARE_OF_DAY, AgentBridge
from supervisor.agent.types import Decision, Proposal, Session, Step
from supervisor.agentsettings import AgentSettings
from supervisor.core import Supervisor
from supervisor.dbengine import make_engine
from tests.bot_harness import worker_table
from tests.conditions import wait_until
from tests.console_harness import console_running
from tests.fakes.messages_api import FakeMessagesAPI
from tests.supervisor_harness import resolve, running, settings

API_KEY = "sk-ant-api03-limits-test-key-not-real-0123456789"


class Watcher:
    """A TurnObserver that records steps and answers proposals with ``decision``."""

    def __init__(self, decision: Decision = "deny") -> None:
        self.steps: list[Step] = []
        self.proposals: list[Proposal] = []
        self.decision = decision
        self.outcomes: list[tuple[str, str]] = []

    async def step(self, step: Step) -> None:
        self.steps.append(step)

    async def approve(self, proposal: Proposal) -> Decision:
        self.proposals.append(proposal)
        return self.decision

    async def acted(self, proposal: Proposal, decision: Decision, outcome: str) -> None:
        self.outcomes.append((proposal.summary, outcome))


@asynccontextmanager
async def engine_running(
    tmp_path: Path, claude: FakeMessagesAPI, **agent: Any
) -> AsyncIterator[tuple[AgentBridge, Supervisor]]:
    conf = settings(tmp_path)
    flows = resolve(tmp_path, conf, worker_table(tmp_path))
    values: dict[str, Any] = {
        "anthropic_api_key": API_KEY,
        "anthropic_base_url": claude.base_url,
        **agent,
    }
    agent_settings = AgentSettings(**values)
    async with running(conf, flows, agent=agent_settings) as (supervisor, _events):
        engine = make_engine(conf.control_db_url)
        try:
            yield AgentBridge(supervisor, engine, agent_settings), supervisor
        finally:
            engine.dispose()


def new_session(bridge: AgentBridge) -> Session:
    return bridge.store.create("chat:0", "worker", bridge.backend)


async def test_a_second_message_waits_for_the_first_turn(tmp_path: Path) -> None:
    with FakeMessagesAPI() as claude:
        async with engine_running(tmp_path, claude) as (bridge, _):
            session = new_session(bridge)
            claude.queue_tool_use("status", {}, "toolu_1")
            claude.queue_reply("first")
            claude.queue_reply("second")
            first = asyncio.create_task(bridge.turn(session, "one", Watcher()))
            await wait_until(lambda: bridge.busy(session.id))
            second = asyncio.create_task(bridge.turn(session, "two", Watcher()))
            one, two = await asyncio.gather(first, second)
            assert (one.text, two.text) == ("first", "second")
            last = claude.message_requests()[-1]["messages"]
            assert [m["content"] for m in last if m["role"] == "user"][-1] == "two"
            assert "first" in json.dumps(last)  # the second turn saw the whole first one


async def test_at_the_daily_cap_nothing_is_sent_and_the_chat_is_told(tmp_path: Path) -> None:
    with FakeMessagesAPI() as claude:
        async with engine_running(tmp_path, claude, agent_max_usd_per_day=1.0) as (bridge, _):
            bridge.ledger.record("claude-sonnet-4-6", 0, 0, 1.0, who="diagnosis")
            result = await bridge.turn(new_session(bridge), "hello", Watcher())
            assert result.ended is not None
            assert "cap" in result.ended
            assert not claude.requests


async def test_a_session_past_its_share_of_the_day_is_refused(tmp_path: Path) -> None:
    with FakeMessagesAPI() as claude:
        async with engine_running(tmp_path, claude, agent_max_usd_per_day=2.0) as (bridge, _):
            session = new_session(bridge)
            session.cost_usd = 2.0 * SESSION_SHARE_OF_DAY
            bridge.store.save(session, busy=False)
            result = await bridge.turn(session, "hello", Watcher())
            assert result.ended is not None
            assert "/new" in result.ended
            assert not claude.requests


async def test_a_turn_that_would_pass_the_cap_mid_way_stops_before_sending(
    tmp_path: Path,
) -> None:
    with FakeMessagesAPI() as claude:
        # A session may spend $0.10 of $0.20 a day. The first round fits; it costs $0.045,
        # and the next round's estimate (its input, and 4096 tokens out at $15/M) does not.
        async with engine_running(tmp_path, claude, agent_max_usd_per_day=0.2) as (bridge, _):
            tool_use = {"type": "tool_use", "id": "toolu_1", "name": "status", "input": {}}
            claude.queue_message([tool_use], "tool_use", input_tokens=15_000)
            claude.queue_reply("never sent")
            result = await bridge.turn(new_session(bridge), "hello", Watcher())
            assert result.ended == "cost cap reached"
            assert len(claude.message_requests()) == 1
            assert result.usage.input_tokens == 15_000  # what it did cost is counted
            assert bridge.ledger.spent_today() == pytest.approx(0.045, abs=0.001)


async def test_the_time_limit_ends_a_turn_but_not_while_a_tap_is_awaited(tmp_path: Path) -> None:
    with FakeMessagesAPI() as claude:
        # 3 s of work at most; the tap waits 3.5 s: the turn must still answer.
        async with engine_running(tmp_path, claude, agent_timeout_seconds=3.0) as (bridge, _):
            claude.queue_tool_use("restart", {}, "toolu_r")
            claude.queue_reply("ok, not restarted")

            class Slow(Watcher):
                async def approve(self, proposal: Proposal) -> Decision:
                    await asyncio.sleep(3.5)  # longer than the turn's own time limit
                    return "deny"

            result = await bridge.turn(new_session(bridge), "restart it", Slow())
            assert result.ended is None
            assert result.text == "ok, not restarted"
            claude.queue_stall()
            stalled = await bridge.turn(new_session(bridge), "again", Watcher())
            assert stalled.ended == "time limit reached"


async def test_a_history_that_no_longer_fits_is_compacted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(builtin, "HISTORY_TOKEN_CAP", 400)
    with FakeMessagesAPI() as claude:
        async with engine_running(tmp_path, claude) as (bridge, _):
            session = new_session(bridge)
            claude.queue_reply("first answer " + "x" * 2000)
            await bridge.turn(session, "first question", Watcher())
            claude.queue_reply("the summary of it all")
            claude.queue_reply("second answer")
            result = await bridge.turn(session, "second question", Watcher())
            assert result.text == "second answer"
            summarise, answer = claude.message_requests()[-2:]
            assert "Summarise our conversation" in json.dumps(summarise["messages"][-1])
            [only] = answer["messages"]
            assert "the summary of it all" in only["content"]
            assert only["content"].endswith("second question")
            assert len(bridge.store.get(session.id).history) == 2  # type: ignore[union-attr]


async def test_an_outage_of_claude_ends_the_turn_with_a_note(tmp_path: Path) -> None:
    with FakeMessagesAPI() as claude:
        async with engine_running(tmp_path, claude) as (bridge, _):
            for _ in range(4):
                claude.queue_error(529, headers={"retry-after-ms": "1"})
            result = await bridge.turn(new_session(bridge), "hello", Watcher())
            assert result.ended == "Claude unavailable (overloaded)"


def test_the_progress_message_shows_steps_elapsed_stalls_and_its_end() -> None:
    progress = Progress("worker", "abc", started=100.0)
    progress.add(Step("📖", "read api.py"), 101.0)
    shown = progress.render(104.0)
    assert "working 4s" in shown.text
    assert "📖 read api.py" in shown.text
    assert [b.data for b in shown.buttons] == ["agentstop:abc"]
    assert "no progress" in progress.render(101.0 + STALL_SECONDS).text
    for n in range(8):
        progress.add(Step("🔎", f"grep {n}"), 200.0)
    assert "4 earlier steps" in progress.render(200.0).text  # 9 steps, the last 5 shown
    final = progress.final(230.0, None)
    assert "answered after 2m 10s · 9 steps" in final.text
    assert not final.buttons


async def test_the_console_holds_a_conversation_with_the_offline_agent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    async with console_running(tmp_path, [worker_table(tmp_path)]) as rig:
        await rig.wait_printed("Type /help")
        await rig.wait_state("worker", "running")
        rig.type("what is worker doing?")
        await rig.wait_printed("offline agent · session")
        assert "📊 status" in rig.printed
        assert "worker is 🟢 running" in rig.printed
        rig.type("please restart it")
        await rig.wait_printed("wants to restart worker")
        approval = rig.printed.split("/approve ", 1)[1].split(" ", 1)[0]
        rig.type(f"/approve {approval} once")
        await rig.wait_printed("Done: restart of worker.")
        rig.type("/sessions")
        await rig.wait_printed("2 turns")


async def test_a_turn_cut_off_by_a_restart_is_announced_and_its_session_kept(
    tmp_path: Path,
) -> None:
    conf = settings(tmp_path)
    engine = make_engine(conf.control_db_url)
    supervisor = Supervisor(conf, resolve(tmp_path, conf, worker_table(tmp_path)))
    bridge = AgentBridge(supervisor, engine, AgentSettings(anthropic_api_key=None))
    session = new_session(bridge)
    bridge.store.save(session, busy=True)  # as a turn in flight when the bot was killed
    [cut] = bridge.store.interrupted()
    assert cut.id == session.id
    assert bridge.store.interrupted() == []
    assert bridge.store.current("chat:0").id == session.id  # type: ignore[union-attr]
    engine.dispose()
