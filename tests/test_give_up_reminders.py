"""Give-up reminders through the real bot: loud, until acknowledged (Ack) or started by hand.

``ALERT_RENOTIFY_HOURS`` is one second here. Two workflows give up; the one
nobody touches keeps being reminded of, and its reminders are the clock: once
three more of them have come after ``worker`` was acknowledged or started,
more than a period has passed, and a reminder of ``worker`` (queued first, in
the same chat) would have come before them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

from tests.bot_harness import ALERT_CHAT, USER, BotRig, bot_running, worker_table
from tests.conditions import wait_until
from tests.fakes.botapi import FakeBotAPI, SentMessage
from tests.test_chat_alerts import buttons

PERIOD_HOURS = 1 / 3600  # one second
CLOCK = "other"  # never acknowledged: its reminders mark the periods passing


def reminder_of(name: str) -> Callable[[SentMessage], bool]:
    return lambda m: (
        m.chat_id == ALERT_CHAT
        and m.text.startswith("⏰ <b>Reminder</b>")
        and f"🛑 <b>{name}</b> gave up" in m.text
    )


def reminders(rig: BotRig, name: str) -> list[SentMessage]:
    return rig.fake.sent_matching(reminder_of(name))


def loud(fake: FakeBotAPI, message: SentMessage) -> bool:
    """Whether the ``sendMessage`` that made ``message`` rang (no ``disable_notification``)."""
    sends = [
        params
        for method, params in fake.calls
        if method == "sendMessage"
        and params["chat_id"] == message.chat_id
        and params["text"] == message.text
    ]
    assert sends, "no sendMessage call made this message"
    return not any(params.get("disable_notification") for params in sends)


@asynccontextmanager
async def both_gave_up(tmp_path: Path) -> AsyncIterator[BotRig]:
    """``worker`` and then ``other`` crashed with no restart allowed; reminders every second."""
    tables = [worker_table(tmp_path, name, max_restart_attempts=0) for name in ("worker", CLOCK)]
    async with bot_running(tmp_path, tables, alert_renotify_hours=PERIOD_HOURS) as rig:
        for name in ("worker", CLOCK):
            await rig.wait_state(name, "running")
            rig.order(name, exit=4)
            await rig.alert(f"🛑 <b>{name}</b> gave up")
        yield rig


async def periods_pass(rig: BotRig) -> None:
    """Wait for three more reminders of ``other``: more than one whole period has passed."""
    seen = len(reminders(rig, CLOCK))
    await rig.fake.wait_for_sent(reminder_of(CLOCK), seen + 3, timeout=10)


async def test_a_give_up_is_reminded_of_loudly_until_its_ack_button_is_pressed(
    tmp_path: Path,
) -> None:
    async with both_gave_up(tmp_path) as rig:
        [first] = await rig.fake.wait_for_sent(reminder_of("worker"))
        assert loud(rig.fake, first)
        assert "not acknowledged: <i>happened at " in first.text
        assert "ack:worker" in buttons(first)
        answered = len(rig.fake.answered_callbacks)
        rig.fake.add_callback("ack:worker", ALERT_CHAT, USER, first.message_id)
        # (Under load a state database may also be locked and readable again: "👍" too.)
        [reply] = await rig.alert("👍 <b>worker</b> acknowledged")
        assert reply.text == "👍 <b>worker</b> acknowledged: its give-up is not repeated."
        await wait_until(lambda: len(rig.fake.answered_callbacks) > answered)
        before = len(reminders(rig, "worker"))
        await periods_pass(rig)
        assert len(reminders(rig, "worker")) == before


async def test_starting_a_workflow_that_gave_up_ends_its_reminders(tmp_path: Path) -> None:
    async with both_gave_up(tmp_path) as rig:
        await rig.fake.wait_for_sent(reminder_of("worker"))
        rig.order("worker")  # the new process behaves
        assert "▶️ started" in await rig.ask("/start worker")
        # The incident's message is closed; any reminder queued before it was sent before it.
        await rig.fake.wait_for_sent(
            lambda m: m.chat_id == ALERT_CHAT and any("started by hand" in e for e in m.edits)
        )
        before = len(reminders(rig, "worker"))
        await periods_pass(rig)
        assert len(reminders(rig, "worker")) == before
