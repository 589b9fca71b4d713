"""K5–K7: the budget in the chat. 80% is a quiet note, 100% a loud pause carrying
[Resume once] [Raise ×2]; a tap lifts it and edits the pause's message; ``/status`` and
``/cost`` show the spend; ``acp_agent_cost_usd_total`` counts each workflow's."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.bot_harness import ALERT_CHAT, USER, BotRig, bot_running, worker_table
from tests.fakes.botapi import FakeBotAPI, SentMessage
from tests.test_chat_alerts import buttons, wait_edit
from tests.test_metrics import ANY_PORT, scraped_until, value

pytestmark = pytest.mark.timeout(60)


def rang(fake: FakeBotAPI, message: SentMessage) -> bool:
    """Whether the ``sendMessage`` that made ``message`` made a sound."""
    sends = [
        params
        for method, params in fake.calls
        if method == "sendMessage" and params["text"] == message.original_text
    ]
    assert sends, "no sendMessage made this message"
    return not any(params.get("disable_notification") for params in sends)


async def wait_until_spent(rig: BotRig, name: str, usd: float) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    while True:
        [status] = await rig.supervisor.status(name)
        if status.spend is not None and status.spend.today_usd == pytest.approx(usd):
            return
        assert loop.time() < deadline, f"{name} spent {status.spend}, not {usd}"
        await asyncio.sleep(0.02)


async def test_a_budget_warns_quietly_pauses_loudly_and_a_tap_resumes(tmp_path: Path) -> None:
    tables = [worker_table(tmp_path, budget_usd_per_day=1.0), worker_table(tmp_path, "cheap")]
    async with bot_running(tmp_path, tables, metrics_addr=ANY_PORT) as rig:
        await rig.wait_state("worker", "running", within=30)
        await rig.wait_state("cheap", "running", within=30)
        rig.order("worker", cost="0.85")
        [warning] = await rig.alert("of its $1.00 budget", within=30)
        assert "$0.85" in warning.text
        assert not rang(rig.fake, warning)
        rig.order("cheap", cost="0.004")
        rig.order("worker", cost="1.25")
        [paused] = await rig.alert("paused: $1.25 spent today", within=30)
        assert rang(rig.fake, paused)
        assert buttons(paused) == ["budgetonce:worker", "budgetraise:worker"]
        await rig.wait_state("worker", "paused", within=30)
        await wait_until_spent(rig, "cheap", 0.004)

        status = await rig.ask("/status")
        assert "💸 $1.25/$1.00 today" in status
        assert "💸 $0.004 today" in status
        detail = await rig.ask("/status worker")
        assert "spend: $1.25 today · $1.25 this run · $1.25 in 7 days" in detail
        assert "paused by its budget" in detail
        cost = await rig.ask("/cost")
        assert cost.index("worker") < cost.index("cheap")  # the dearest first
        assert "the bot's own agents (/why, the bridge, heal): $0 of $5.00 a day" in cost
        assert "total today: $1.25" in cost  # 1.254, shown to the cent

        rig.fake.add_callback("budgetonce:worker", ALERT_CHAT, USER, paused.message_id)
        await wait_edit(paused, "resumed once by", within=30)
        await rig.wait_state("worker", "starting", "running", within=30)
        assert "may spend $2.00 today" in paused.text

        samples = await scraped_until(
            rig,
            lambda s: (
                value(s, "acp_agent_cost_usd_total", workflow="worker", who="workflow") == 1.25
            ),
        )
        assert value(samples, "acp_agent_cost_usd_total", workflow="cheap", who="workflow") == (
            pytest.approx(0.004)
        )


async def test_raise_twice_from_the_chat_doubles_the_budget(tmp_path: Path) -> None:
    async with bot_running(tmp_path, [worker_table(tmp_path, budget_usd_per_day=0.5)]) as rig:
        await rig.wait_state("worker", "running", within=30)
        rig.order("worker", cost="0.6")
        [paused] = await rig.alert("paused: $0.60 spent today", within=30)
        rig.fake.add_callback("budgetraise:worker", ALERT_CHAT, USER, paused.message_id)
        await wait_edit(paused, "budget raised to $1.00/day", within=30)
        await rig.wait_state("worker", "starting", "running", within=30)
        assert "budget: $1.00/day" in await rig.ask("/status worker")
        refused = await rig.ask("/budgetonce worker")
        assert "not paused" in refused
