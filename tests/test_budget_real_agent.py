"""K0 and K2 end to end: the whole path with a real agent. A workflow built on ``workflows/`` whose
``ClaudeAgent`` talks HTTP to the stand-in Messages endpoint records its usage; its
budget is reached, it is paused with a loud alert, and [Resume once] resumes its run from
its checkpoint with the run's spend carried on, not counted twice."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.bot_harness import ALERT_CHAT, USER, bot_running
from tests.fakes.messages_api import FakeMessagesAPI
from tests.test_chat_alerts import buttons, wait_edit

pytestmark = pytest.mark.timeout(90)

SPENDER = """
import time
from workflows import ClaudeAgent, Context, Workflow

wf = Workflow("spender")
agent = ClaudeAgent(model="claude-sonnet-4-6", max_retries=0)


@wf.task(retries=0)
def think(ctx: Context, step: int) -> str:
    return agent.run(f"step {step}")


@wf.main
def main(ctx: Context) -> None:
    for step in range(500):
        ctx.summary(f"step {step}")
        think(ctx, step)
        time.sleep(0.05)
"""
# claude-sonnet-4 lists at $3 in and $15 out per million tokens: $0.45 a call.
BIG_CALL = {"input_tokens": 100_000, "output_tokens": 10_000}


async def test_a_real_agent_reaches_its_budget_is_paused_and_resumes_once(
    tmp_path: Path,
) -> None:
    script = tmp_path / "spender.py"
    script.write_text(SPENDER, encoding="utf-8")
    messages = FakeMessagesAPI().start()
    try:
        for _ in range(3):
            messages.queue_reply("thought", **BIG_CALL)
        messages.default_reply = "a small thought"  # 10 in, 5 out: $0.000105
        table = {
            "name": "spender",
            "script": str(script),
            "budget_usd_per_day": 1.0,
            "env": {"ANTHROPIC_BASE_URL": messages.base_url, "ANTHROPIC_API_KEY": "sk-test"},
        }
        async with bot_running(tmp_path, [table]) as rig:
            await rig.alert("of its $1.00 budget", within=30)  # $0.90 after two calls
            [paused] = await rig.alert("paused: $1.35 spent today", within=30)
            assert buttons(paused) == ["budgetonce:spender", "budgetraise:spender"]
            await rig.wait_state("spender", "paused", within=30)
            [before] = await rig.supervisor.status("spender")
            assert before.spend is not None
            assert before.spend.run_usd == pytest.approx(before.spend.today_usd)

            rig.fake.add_callback("budgetonce:spender", ALERT_CHAT, USER, paused.message_id)
            await wait_edit(paused, "resumed once by", within=30)
            await rig.wait_state("spender", "running", within=30)
            calls = len(messages.message_requests())
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 30
            while True:  # the resumed run makes calls again, adding to the same run's total
                [after] = await rig.supervisor.status("spender")
                assert after.spend is not None
                if len(messages.message_requests()) > calls and after.spend.run_usd != (
                    before.spend.run_usd
                ):
                    break
                assert loop.time() < deadline, "the resumed run made no call"
                await asyncio.sleep(0.05)
            assert after.spend.run_usd is not None
            assert before.spend.run_usd is not None
            assert after.spend.run_usd > before.spend.run_usd  # carried on, not from 0
            assert after.spend.today_usd == pytest.approx(after.spend.run_usd, abs=1e-3)
            assert after.spend.allowance_usd == 2.0
    finally:
        messages.stop()
