"""Alerts end to end: a real workflow process misbehaves, the chat hears about it.

One incident is one message that its later steps edit; a give-up is a new,
loud message; every alert carries the buttons for the next step, and a
button press does what it says and is answered.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.bot_harness import (
    ALERT_CHAT,
    THREAD,
    USER,
    BotRig,
    bot_running,
    demo_table,
    worker_table,
)
from tests.fakes.botapi import SentMessage


def buttons(message: SentMessage) -> list[str]:
    assert message.reply_markup is not None
    return [
        button["callback_data"] for row in message.reply_markup["inline_keyboard"] for button in row
    ]


async def wait_edit(message: SentMessage, text: str, within: float = 5) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not any(text in edit for edit in message.edits):
        assert loop.time() < deadline, f"no edit with {text!r}: {message.edits!r}"
        await asyncio.sleep(0.02)


async def test_a_crash_is_one_message_that_the_restart_and_recovery_edit(tmp_path: Path) -> None:
    tables = [worker_table(tmp_path, restart_backoff_seconds=[1.0])]
    async with bot_running(tmp_path, tables) as rig:
        await rig.wait_state("worker", "running")
        rig.order("worker", exit=3)
        [crash] = await rig.alert("💥 <b>worker</b> crashed: exit code 3")
        rig.order("worker")  # the restarted process behaves
        assert crash.message_thread_id == THREAD
        assert "exiting with 3" in crash.text  # the last log lines
        assert "<pre>" in crash.text
        assert "restarting, attempt 1/1, next in 1s" in crash.text
        assert buttons(crash) == ["restart:worker", "tail:worker", "why:worker", "mute:worker:1h"]
        await wait_edit(crash, "restarted, attempt 1/1; waiting for a heartbeat")
        await wait_edit(crash, "recovered after")
        await rig.alert("✅ <b>worker</b> recovered after")
        assert len(rig.fake.sent_matching(lambda m: "crashed" in m.text)) == 1


async def test_giving_up_is_a_new_message(tmp_path: Path) -> None:
    async with bot_running(tmp_path, [worker_table(tmp_path)]) as rig:
        await rig.wait_state("worker", "running")
        rig.order("worker", exit=4)
        [gave_up] = await rig.alert("🛑 <b>worker</b> gave up: 1 restart failed")
        [crash] = rig.fake.sent_matching(lambda m: "crashed: exit code 4" in m.text)
        assert crash.message_id != gave_up.message_id
        assert crash.edits, "the second crash of the incident edits the first message"
        # The incident's last word and the give-up name the same cause.
        assert "giving up: 1 restart failed (max_restart_attempts = 1)" in crash.edits[-1]
        assert "It waits for /start worker." in gave_up.text
        assert buttons(gave_up) == ["start:worker", "tail:worker", "why:worker", "ack:worker"]


async def test_an_error_and_a_status_change_are_alerts(tmp_path: Path) -> None:
    async with bot_running(tmp_path, [worker_table(tmp_path)]) as rig:
        await rig.wait_state("worker", "running")
        rig.order("worker", error="quota <exceeded> & out")
        [error] = await rig.alert("❗ <b>worker</b> error")
        assert "<pre>quota &lt;exceeded&gt; &amp; out</pre>" in error.text
        assert buttons(error) == [
            "restart:worker",
            "tail:worker",
            "why:worker",
            "mute:worker:1h",
            "ack:worker",
        ]
        rig.order("worker", status="error", summary="stuck on <step 3>")
        [changed] = await rig.alert("says its status is error")
        assert "stuck on &lt;step 3&gt;" in changed.text


async def test_a_hang_is_reported(tmp_path: Path) -> None:
    # The threshold also bounds the first heartbeat: long enough for a start on a loaded machine.
    tables = [worker_table(tmp_path, hang_threshold_seconds=6.0, restart_backoff_seconds=[5])]
    async with bot_running(tmp_path, tables) as rig:
        await rig.wait_state("worker", "running", within=30)
        rig.order("worker", hang=True)
        [hung] = await rig.alert("⏳ <b>worker</b> hung: no heartbeat for", within=30)
        assert "(threshold 6s)" in hung.text
        assert "restarting, attempt 1/1" in hung.text
        assert buttons(hung)[0] == "restart:worker"


async def test_a_finish_is_a_quiet_note(tmp_path: Path) -> None:
    async with bot_running(tmp_path, [demo_table()]) as rig:
        [done] = await rig.alert("🏁 <b>demo</b> finished", within=10)
        assert done.message_thread_id == THREAD


async def test_alert_buttons_restart_tail_and_mute(tmp_path: Path) -> None:
    async with bot_running(tmp_path, [worker_table(tmp_path)]) as rig:
        await rig.wait_state("worker", "running")
        [before] = await rig.supervisor.status("worker")
        rig.order("worker", error="bad")
        [error] = await rig.alert("❗ <b>worker</b> error")
        reply = await press(rig, "restart:worker", error)
        assert "🔁 restarted" in reply.text
        [after] = await rig.supervisor.status("worker")
        assert after.pid is not None
        assert after.pid != before.pid
        assert "<b>worker</b> log" in (await press(rig, "tail:worker", error)).text
        assert "Muted for 1h" in (await press(rig, "mute:1h", error)).text
        assert await rig.bot.service.notifier.muted_until() is not None
        assert len(rig.fake.answered_callbacks) == 3


async def press(rig: BotRig, data: str, message: SentMessage) -> SentMessage:
    seen = {m.message_id for m in rig.fake.sent_matching()}
    answered = len(rig.fake.answered_callbacks)
    rig.fake.add_callback(data, ALERT_CHAT, USER, message.message_id)
    [reply] = await rig.fake.wait_for_sent(
        lambda m: m.chat_id == ALERT_CHAT and m.message_id not in seen
    )
    # The press is answered beside the reply, not before it: wait for it too.
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 5
    while len(rig.fake.answered_callbacks) == answered:
        assert loop.time() < deadline, "the button press was never answered"
        await asyncio.sleep(0.02)
    assert len(rig.fake.answered_callbacks) == answered + 1
    return reply
