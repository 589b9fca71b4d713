"""``/tail NAME follow``: paced like every message, stoppable, one per chat, terse in a terminal.

Updates are replies through the outbox with the follow's key: they edit the
first message, wait out a 429 instead of ending the follow, and an update
still waiting is replaced by the next one (coalesced).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from bot.commands import Follow, new_lines
from tests.bot_harness import COMMAND_CHAT, USER, BotRig, bot_running, worker_table
from tests.conditions import wait_until
from tests.console_harness import console_running
from tests.fakes.botapi import SentMessage
from tests.test_chat_alerts import buttons


@pytest.fixture
async def rig(tmp_path: Path) -> object:
    async with bot_running(tmp_path) as running:
        await running.wait_state("worker", "running")
        yield running


def follow(rig: BotRig, every: float, duration: float) -> None:
    rig.bot.service.router.follow = Follow(every=every, duration=duration)


async def wait_ended(message: SentMessage, reason: str, timeout: float = 10) -> None:  # noqa: ASYNC109
    await wait_until(
        lambda: bool(message.edits) and f"stopped following: {reason}" in message.edits[-1],
        timeout,
    )


async def test_a_follow_edits_its_message_with_a_stop_button_until_time_is_up(
    rig: BotRig,
) -> None:
    follow(rig, every=0.1, duration=0.8)
    [reply] = await rig.send("/tail worker follow")
    assert "(following)" in reply.text
    assert buttons(reply) == ["unfollow:worker"]
    await wait_ended(reply, "time is up")
    assert len(reply.edits) >= 2
    assert any("left)" in edit for edit in reply.edits[:-1])
    assert buttons(reply) == ["tail:worker"]  # once over, the button looks again


async def test_a_follow_waits_out_a_429_and_its_waiting_updates_are_coalesced(
    rig: BotRig,
) -> None:
    follow(rig, every=0.1, duration=3)
    [reply] = await rig.send("/tail worker follow")
    await wait_until(lambda: bool(reply.edits))
    rig.fake.fail_next("editMessageText", 429, retry_after=2)
    await wait_ended(reply, "time is up")
    # About 30 updates; the two seconds on hold became one edit, not twenty.
    assert len(reply.edits) < 15


async def test_the_stop_button_ends_the_follow(rig: BotRig) -> None:
    follow(rig, every=0.1, duration=60)
    [reply] = await rig.send("/tail worker follow")
    await wait_until(lambda: bool(reply.edits))
    rig.fake.add_callback("unfollow:worker", COMMAND_CHAT, USER, reply.message_id)
    await wait_ended(reply, "stopped")
    edits = len(reply.edits)
    await asyncio.sleep(0.4)
    assert len(reply.edits) == edits
    # The press is answered; no message is sent for it.
    assert rig.fake.answered_callbacks[-1]["text"] == "unfollow worker"
    assert rig.fake.sent_matching(lambda m: m.chat_id == COMMAND_CHAT) == [reply]


async def test_a_new_follow_in_the_chat_ends_the_one_before(rig: BotRig) -> None:
    follow(rig, every=0.1, duration=60)
    [first] = await rig.send("/tail worker follow")
    await wait_until(lambda: bool(first.edits))
    [second] = await rig.send("/tail demo follow")
    await wait_ended(first, "another follow started")
    await wait_until(lambda: len(second.edits) >= 2)
    assert "(following," in second.edits[-1]
    rig.fake.add_callback("unfollow:worker", COMMAND_CHAT, USER, first.message_id)
    await asyncio.sleep(0.3)  # a stale Stop does not end the follow of another workflow
    assert "(following," in second.edits[-1]


async def test_a_follow_in_the_console_prints_only_new_lines(tmp_path: Path) -> None:
    tables = [worker_table(tmp_path)]
    async with console_running(tmp_path, tables, follow=Follow(every=0.1, duration=1.5)) as con:
        await con.wait_printed("Type /help")
        await con.wait_state("worker", "running")
        con.type("/tail worker follow")
        await con.wait_printed("~ (stopped following: time is up)")
    followed = [line for line in con.printed.splitlines() if line.startswith("~ beat")]
    assert followed, con.printed
    assert len(followed) == len(set(followed))  # nothing printed twice
    first_page = con.printed.split("worker log (following)", 1)[1].split("~ ", 1)[0]
    assert not any(line[2:] in first_page for line in followed)


def test_new_lines_are_what_follows_the_overlap_of_two_tails() -> None:
    assert new_lines(["a", "b", "c"], ["b", "c", "d", "e"]) == ["d", "e"]
    assert new_lines(["a", "b"], ["a", "b"]) == []
    assert new_lines([], ["a"]) == ["a"]
    assert new_lines(["a", "b"], ["x", "y"]) == ["x", "y"]  # more new lines than a tail holds
    assert new_lines(["x", "x"], ["x", "x", "x"]) == ["x"]
