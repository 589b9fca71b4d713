"""A phone-first chat: START greets, names are buttons, other bots' commands are not ours.

Every test goes through the real bot, python-telegram-bot and the stand-in
Bot API, which refuses what Telegram refuses (a button's data past 64 bytes,
more than 100 buttons), so a keyboard that would be refused fails here too.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from bot.render import name_buttons, name_picker
from bot.text import Button
from bot.transport import button_rows
from tests.bot_harness import COMMAND_CHAT, USER, BotRig, bot_running, worker_table
from tests.conditions import wait_until
from tests.fakes.botapi import SentMessage
from tests.test_chat_alerts import buttons


@pytest.fixture
async def rig(tmp_path: Path) -> object:
    async with bot_running(tmp_path) as running:
        yield running


def rows(message: SentMessage) -> list[list[str]]:
    assert message.reply_markup is not None
    return [[b["callback_data"] for b in row] for row in message.reply_markup["inline_keyboard"]]


async def press(rig: BotRig, data: str, message: SentMessage) -> SentMessage:
    """Tap a button on ``message`` and return the reply it gets."""
    seen = {m.message_id for m in rig.fake.sent_matching()}
    rig.fake.add_callback(data, message.chat_id, USER, message.message_id)
    [reply] = await rig.fake.wait_for_sent(
        lambda m: m.chat_id == message.chat_id and m.message_id not in seen
    )
    return reply


async def test_start_without_a_name_greets_with_the_overview_and_buttons(rig: BotRig) -> None:
    await rig.wait_state("worker", "running")
    await rig.wait_state("demo", "running", "finished")
    [greeting] = await rig.send("/start")
    assert greeting.text.startswith("👋")
    [status] = await rig.supervisor.status("demo")
    overview = "2 ok" if status.state == "running" else "1 ok · 1 finished"
    assert overview in greeting.text
    assert rows(greeting) == [["status", "help"]]
    assert "<b>2 workflows</b>" in (await press(rig, "status", greeting)).text
    assert "<b>Commands</b>" in (await press(rig, "help", greeting)).text
    # The greeting changed nothing, so it is not audited as a command.
    [worker] = await rig.supervisor.status("worker")
    assert worker.restarts == 0


async def test_a_start_that_waited_while_the_bot_was_offline_still_greets(rig: BotRig) -> None:
    # Only a command that changes something is refused when stale; START changes nothing.
    text = await rig.ask("/start", date=int(time.time()) - 3600)
    assert text.startswith("👋")


@pytest.mark.parametrize("command", ["stop", "restart", "pause", "resume", "tail", "logs", "ack"])
async def test_a_missing_name_offers_the_names_as_buttons(rig: BotRig, command: str) -> None:
    [picker] = await rig.send(f"/{command}")
    assert picker.text.startswith(f"usage: /{command} NAME")
    assert buttons(picker) == [f"{command}:worker", f"{command}:demo"]


async def test_a_name_button_runs_the_command_on_that_workflow(rig: BotRig) -> None:
    await rig.wait_state("worker", "running")
    [picker] = await rig.send("/restart")
    reply = await press(rig, "restart:worker", picker)
    assert "<b>worker</b> 🔁 restarted" in reply.text
    [stopper] = await rig.send("/stop")
    assert "⏹ stopped" in (await press(rig, "stop:worker", stopper)).text
    [starter] = await rig.send("/start worker")
    assert "▶️ started" in starter.text


async def test_more_names_than_telegram_allows_buttons_are_listed_as_left_over(
    tmp_path: Path,
) -> None:
    tables = [worker_table(tmp_path, name=f"w{index:03}", autostart=False) for index in range(105)]
    async with bot_running(tmp_path, tables) as rig:
        [picker] = await rig.send("/tail")
        assert len(buttons(picker)) == 100
        assert buttons(picker)[0] == "tail:w000"
        assert "5 without a button" in picker.text
        assert "/tail NAME" in picker.text
        # /status of so many is the overview; its pages give each name its button.
        [overview] = await rig.send("/status")
        assert overview.text.startswith("<b>105 workflows</b>")
        [pages] = buttons(overview)
        rig.fake.add_callback(pages, COMMAND_CHAT, USER, overview.message_id)
        await wait_until(lambda: "status:w000" in str(overview.reply_markup), 20)
        assert buttons(overview)[:2] == ["status:w000", "status:w001"]


def test_a_name_whose_button_data_passes_64_bytes_gets_no_button() -> None:
    long = "n" * 60  # "restart:" + 60 = 68 bytes
    found, left = name_buttons("restart", ["api", long])
    assert found == (Button("api", "restart:api"),)
    assert left == 1
    picker = name_picker("restart", ["api", long], "usage: /restart NAME")
    assert "1 without a button" in picker.text
    assert name_picker("restart", [], "usage: /restart NAME").buttons == ()


def test_buttons_of_one_workflow_share_a_row_and_lists_go_three_to_a_row() -> None:
    alert = [Button(label, f"{label.lower()}:api") for label in ("Restart", "Tail")]
    alert += [Button("Mute", "mute:api:1h"), Button("Ack", "ack:api")]
    assert [[b.data for b in row] for row in button_rows(alert)] == [
        ["restart:api", "tail:api", "mute:api:1h", "ack:api"]
    ]
    picks = [Button(name, f"status:{name}") for name in "abcdefg"]
    assert [len(row) for row in button_rows(picks)] == [3, 3, 1]
    burst = [*alert, Button("Restart", "restart:db"), Button("Tail", "tail:db")]
    assert [len(row) for row in button_rows(burst)] == [4, 2]


async def test_status_has_a_button_per_workflow_that_opens_its_detail(rig: BotRig) -> None:
    await rig.wait_state("worker", "running")
    [overview] = await rig.send("/status")
    assert rows(overview) == [["status:worker", "status:demo"]]
    detail = await press(rig, "status:worker", overview)
    assert "restarts: 0/1" in detail.text
    assert "restart:worker" in buttons(detail)


async def test_a_command_for_another_bot_is_ignored_and_ours_is_answered(rig: BotRig) -> None:
    await rig.wait_state("worker", "running")
    [before] = await rig.supervisor.status("worker")
    seen = len(rig.fake.sent_matching(lambda m: m.chat_id == COMMAND_CHAT))
    rig.fake.add_message("/restart@other_bot worker", COMMAND_CHAT, USER)
    rig.fake.add_message("/status@other_bot", COMMAND_CHAT, USER)
    # A command to us after them: once it is answered, theirs were handled (in order).
    assert "<b>Workflows</b>" in await rig.ask("/workflows@Test_Bot")
    replies = rig.fake.sent_matching(lambda m: m.chat_id == COMMAND_CHAT)
    assert len(replies) == seen + 1
    [after] = await rig.supervisor.status("worker")
    assert after.pid == before.pid


async def test_tail_past_the_maximum_is_clamped_with_a_note(rig: BotRig) -> None:
    await rig.wait_state("worker", "running")
    text = await rig.ask("/tail worker 500")
    assert text.startswith("<b>worker</b> log (the last 200, the most a message shows; /logs")
    assert "<pre>" in text
    assert "usage" not in text
    assert "usage: /tail NAME [LINES]" in await rig.ask("/tail worker 0")


async def test_mute_one_workflow_and_unmute_it(rig: BotRig) -> None:
    notifier = rig.bot.service.notifier
    text = await rig.ask("/mute worker 2h")
    assert "🔕 <b>worker</b> muted for 2h" in text
    assert await notifier.muted_until("worker") is not None
    assert await notifier.muted_until("demo") is None
    assert await notifier.muted_until() is None
    assert "<b>worker</b>: alerts on again" in await rig.ask("/unmute worker")
    assert await notifier.muted_until("worker") is None
    assert "Muted for 30m" in await rig.ask("/mute 30m")
    assert await notifier.muted_until() is not None
    assert "Alerts on again" in await rig.ask("/unmute")
    assert "unknown workflow 'nope'" in await rig.ask("/unmute nope")


async def test_an_alert_mute_button_mutes_that_workflow_only(rig: BotRig) -> None:
    [overview] = await rig.send("/status")
    reply = await press(rig, "mute:worker:1h", overview)
    assert "<b>worker</b> muted for 1h" in reply.text
    notifier = rig.bot.service.notifier
    await wait_until(lambda: bool(rig.fake.answered_callbacks))
    assert await notifier.muted_until("worker") is not None
    assert await notifier.muted_until() is None
    assert rig.fake.answered_callbacks[-1]["text"] == "mute worker 1h"


async def test_ack_by_command_and_button(rig: BotRig) -> None:
    text = await rig.ask("/ack worker")
    assert "has no give-up waiting to be acknowledged" in text
    [overview] = await rig.send("/status")
    assert "no give-up" in (await press(rig, "ack:worker", overview)).text
