"""A command's reply, or a button's, is never lost: late rather than never, in order, in place.

The bot runs against the stand-in Bot API, which answers sendMessage with
429s, 5xx or a dropped connection; the reply goes through the same durable
outbox as alerts, so it also survives a kill -9 of a real ``python -m bot``.
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from bot.outbox import Alert, Notifier, Pacing
from bot.pacing import Pacer
from bot.text import Message
from bot.transport import ChatTarget
from supervisor.dbengine import make_engine
from tests.bot_harness import (
    ALERT_CHAT,
    BOT_START_SECONDS,
    COMMAND_CHAT,
    TOKEN,
    USER,
    BotRig,
    bot_running,
    is_alert,
    process_env,
    worker_table,
)
from tests.conditions import wait_until
from tests.fakes.botapi import FakeBotAPI, SentMessage
from tests.test_alert_delivery import TOKEN as TRANSPORT_TOKEN
from tests.test_alert_delivery import Clock, fresh_transport
from tests.test_bot_process import start, terminate

REPLY_WAIT = 15.0  # generous: several retry_after seconds on a loaded machine


@pytest.fixture
def fake() -> Iterator[FakeBotAPI]:
    with FakeBotAPI(TOKEN) as server:
        yield server


@pytest.fixture
def api() -> Iterator[FakeBotAPI]:
    """The stand-in Bot API for a bare notifier (``fresh_transport``'s token)."""
    with FakeBotAPI(TRANSPORT_TOKEN) as server:
        yield server


def in_chat(chat: int) -> Callable[[SentMessage], bool]:
    return lambda m: m.chat_id == chat


def send_calls_to(fake: FakeBotAPI, chat: int) -> int:
    return sum(method == "sendMessage" and p["chat_id"] == chat for method, p in fake.calls)


async def quiet(rig: BotRig) -> None:
    """Wait until no alert is pending, so failures armed next hit the reply, not an alert."""
    await rig.wait_state("worker", "running")
    assert await rig.bot.service.notifier.wait_idle(5)


async def test_status_under_three_429s_gets_its_answer_after_the_retry_afters(
    tmp_path: Path,
) -> None:
    async with bot_running(tmp_path, [worker_table(tmp_path)]) as rig:
        await quiet(rig)
        rig.fake.fail_next("sendMessage", 429, retry_after=1, count=3)
        started = time.monotonic()
        rig.fake.add_message("/status", COMMAND_CHAT, USER)
        [reply] = await rig.fake.wait_for_sent(in_chat(COMMAND_CHAT), timeout=REPLY_WAIT)
        waited = time.monotonic() - started
        assert await rig.bot.service.notifier.wait_idle(5)
    assert "<b>1 workflow</b>" in reply.text
    assert waited >= 2.9  # three retry_after=1, each honoured
    assert send_calls_to(rig.fake, COMMAND_CHAT) == 4
    assert len(rig.fake.sent_matching(in_chat(COMMAND_CHAT))) == 1


@pytest.mark.parametrize(
    "failure",
    [
        lambda fake: fake.fail_next("sendMessage", 502, count=2),
        lambda fake: fake.hang_up_next("sendMessage", count=2),
    ],
    ids=["5xx", "dropped connection"],
)
async def test_a_reply_survives_server_and_network_errors_and_arrives_once(
    tmp_path: Path, failure: Callable[[FakeBotAPI], None]
) -> None:
    async with bot_running(tmp_path, [worker_table(tmp_path)]) as rig:
        await quiet(rig)
        failure(rig.fake)
        rig.fake.add_message("/workflows", COMMAND_CHAT, USER)
        [reply] = await rig.fake.wait_for_sent(in_chat(COMMAND_CHAT), timeout=REPLY_WAIT)
        assert await rig.bot.service.notifier.wait_idle(5)
    assert "<code>worker</code>" in reply.text
    assert send_calls_to(rig.fake, COMMAND_CHAT) == 3
    assert len(rig.fake.sent_matching(in_chat(COMMAND_CHAT))) == 1


async def test_a_button_reply_under_429_arrives_and_the_press_is_answered(
    tmp_path: Path,
) -> None:
    async with bot_running(tmp_path, [worker_table(tmp_path)]) as rig:
        await quiet(rig)
        [status] = await rig.send("/status")
        rig.fake.fail_next("answerCallbackQuery", 429, retry_after=1)
        rig.fake.fail_next("sendMessage", 429, retry_after=1, count=2)
        rig.fake.add_callback("tail:worker", COMMAND_CHAT, USER, status.message_id)
        tail = await rig.fake.wait_for_sent(
            lambda m: m.chat_id == COMMAND_CHAT and m.message_id != status.message_id,
            timeout=REPLY_WAIT,
        )
        await wait_until(lambda: len(rig.fake.answered_callbacks) == 1)
    assert len(tail) == 1
    assert "worker" in tail[0].text
    assert rig.fake.answered_callbacks[0]["text"] == "tail worker"


async def test_a_slow_button_answer_does_not_hold_up_the_reply(tmp_path: Path) -> None:
    async with bot_running(tmp_path, [worker_table(tmp_path)]) as rig:
        await quiet(rig)
        [status] = await rig.send("/status")
        rig.fake.fail_next("answerCallbackQuery", 429, retry_after=2)
        rig.fake.add_callback("tail:worker", COMMAND_CHAT, USER, status.message_id)
        await rig.fake.wait_for_sent(
            lambda m: m.chat_id == COMMAND_CHAT and m.message_id > status.message_id
        )
        assert rig.fake.answered_callbacks == []  # still waiting out its retry_after
        await wait_until(lambda: len(rig.fake.answered_callbacks) == 1)


async def test_a_reply_goes_to_the_chat_and_thread_of_its_command(tmp_path: Path) -> None:
    topic = 99  # not the alerts' thread
    async with bot_running(tmp_path, [worker_table(tmp_path)]) as rig:
        await quiet(rig)
        rig.fake.fail_next("sendMessage", 429, retry_after=1)
        rig.fake.add_message("/workflows", ALERT_CHAT, USER, thread_id=topic)
        rig.fake.add_message("/help", COMMAND_CHAT, USER)
        [in_topic] = await rig.fake.wait_for_sent(
            lambda m: m.chat_id == ALERT_CHAT and "<code>worker</code>" in m.text,
            timeout=REPLY_WAIT,
        )
        [private] = await rig.fake.wait_for_sent(in_chat(COMMAND_CHAT), timeout=REPLY_WAIT)
    assert in_topic.message_thread_id == topic
    assert "/status" in private.text
    assert private.message_thread_id is None


async def test_long_replies_after_a_429_and_a_hang_up_arrive_in_order(tmp_path: Path) -> None:
    names = [f"w-{n:03d}" for n in range(400)]  # short: the hello lists them all
    tables = [worker_table(tmp_path), *(worker_table(tmp_path, n, autostart=False) for n in names)]
    async with bot_running(tmp_path, tables) as rig:
        await quiet(rig)
        rig.fake.fail_next("sendMessage", 429, retry_after=1)
        rig.fake.hang_up_next("sendMessage")
        for command in ("/status", "/help", "/workflows"):
            rig.fake.add_message(command, COMMAND_CHAT, USER)
        await rig.fake.wait_for_sent(
            lambda m: m.chat_id == COMMAND_CHAT and m.text.startswith("<b>Workflows</b>"),
            timeout=REPLY_WAIT,
        )
        texts = [m.text for m in rig.fake.sent_matching(in_chat(COMMAND_CHAT))]
    status, help_text, workflows = texts  # each once, in the order asked
    assert status.startswith("<b>401 workflows</b>: ")  # the overview; pages behind buttons
    assert "/tail" in help_text
    assert workflows.startswith("<b>Workflows</b>")
    listed = re.findall(r"<code>(w-\d+)</code>", workflows)
    assert listed == names[: len(listed)]


async def test_a_reply_overtakes_the_alerts_waiting_for_its_chat(
    api: FakeBotAPI, tmp_path: Path
) -> None:
    chat = ChatTarget(4242)
    engine = make_engine(f"sqlite:///{tmp_path / 'control.db'}")
    async with fresh_transport(api) as transport:
        notifier = Notifier(engine, transport, chat, pacing=Pacing(per_chat_seconds=0.2))
        for n in range(10):
            await notifier.enqueue(Alert(f"alert {n}", mergeable=False))
        delivered = await notifier.reply(chat, [Message("pong 1"), Message("pong 2")])
        await notifier.start()
        message_id = await asyncio.wait_for(delivered, 5)
        await notifier.stop(flush_timeout=0)
    engine.dispose()
    assert [m.text for m in api.sent[:2]] == ["pong 1", "pong 2"]
    assert message_id == api.sent[1].message_id


def test_a_reply_may_burst_ahead_of_the_spacing_and_the_chat_pays_it_back() -> None:
    clock = Clock()
    pacer = Pacer(Pacing(per_chat_seconds=1.0, reply_burst=3), clock)
    chat = ChatTarget(1)
    for _ in range(3):
        assert pacer.ready_in(chat, burst=3) == 0
        pacer.record(chat)
    assert pacer.ready_in(chat, burst=3) == pytest.approx(1.0)
    assert pacer.ready_in(chat) == pytest.approx(3.0)  # an alert waits out the whole burst
    pacer.hold(chat, 5.0)
    assert pacer.ready_in(chat, burst=3) == pytest.approx(5.0)  # nothing runs ahead of a 429


_OLD_OUTBOX = """
CREATE TABLE bot_outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT, created_at FLOAT NOT NULL, key VARCHAR(255),
    text TEXT NOT NULL, buttons TEXT NOT NULL, loud BOOLEAN NOT NULL, critical BOOLEAN NOT NULL,
    mergeable BOOLEAN NOT NULL, status VARCHAR(16) NOT NULL, attempts INTEGER NOT NULL,
    next_attempt_at FLOAT NOT NULL, last_error TEXT, sent_at FLOAT, message_id BIGINT)
"""


async def test_an_outbox_from_before_replies_is_upgraded_and_its_alerts_delivered(
    api: FakeBotAPI, tmp_path: Path
) -> None:
    path = tmp_path / "control.db"
    with sqlite3.connect(path) as db:
        db.execute(_OLD_OUTBOX)
        db.execute(
            "INSERT INTO bot_outbox (created_at, text, buttons, loud, critical, mergeable,"
            " status, attempts, next_attempt_at) VALUES (0, 'old alert', '[]', 1, 0, 0,"
            " 'pending', 0, 0)"
        )
    db.close()
    engine = make_engine(f"sqlite:///{path}")
    async with fresh_transport(api) as transport:
        notifier = Notifier(engine, transport, ChatTarget(ALERT_CHAT, 7))
        await notifier.start()
        await api.wait_for_sent(lambda m: m.text == "old alert")
        await notifier.stop()
    columns = {column["name"] for column in sa.inspect(engine).get_columns("bot_outbox")}
    engine.dispose()
    assert {"chat_id", "thread_id", "priority"} <= columns
    [alert] = api.sent
    assert (alert.chat_id, alert.message_thread_id) == (ALERT_CHAT, 7)


def test_a_reply_pending_at_kill_9_is_delivered_once_after_restart(
    tmp_path: Path, fake: FakeBotAPI
) -> None:
    env = process_env(fake, tmp_path)
    bot = start(env)
    try:
        fake.wait_for_sent_sync(is_alert("bot up"), timeout=BOT_START_SECONDS)
        fake.fail_next("sendMessage", 500, count=10**6)
        fake.add_message("/status", COMMAND_CHAT, USER)
        deadline = time.monotonic() + 10
        while send_calls_to(fake, COMMAND_CHAT) < 2:  # committed, and being retried
            assert time.monotonic() < deadline, "the reply was never attempted"
            time.sleep(0.02)
    finally:
        bot.kill()
        bot.communicate(timeout=10)
    fake.clear_failures()
    assert fake.sent_matching(in_chat(COMMAND_CHAT)) == []
    again = start(env)
    try:
        [reply] = fake.wait_for_sent_sync(in_chat(COMMAND_CHAT), timeout=15)
        fake.wait_for_sent_sync(is_alert("bot up"), count=2, timeout=BOT_START_SECONDS)
    finally:
        code, err = terminate(again)
    assert code == 0, err
    assert "<b>2 workflows</b>" in reply.text
    assert len(fake.sent_matching(in_chat(COMMAND_CHAT))) == 1
