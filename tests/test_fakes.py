"""The fake servers must behave like the real APIs as seen through the real client libraries."""

from __future__ import annotations

import asyncio
import datetime as dtm
import threading
import time
from collections.abc import Iterator

import anthropic
import httpx
import pytest
from anthropic.types import MessageParam
from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup, Update, User
from telegram.constants import ChatAction, ParseMode
from telegram.error import BadRequest, InvalidToken, NetworkError, RetryAfter
from telegram.ext import Updater

from tests.conditions import wait_until
from tests.fakes.botapi import CONFLICT_DESCRIPTION, FakeBotAPI
from tests.fakes.messages_api import FakeMessagesAPI

TOKEN = "123:TEST"
USER_X: MessageParam = {"role": "user", "content": "x"}


@pytest.fixture
def fake() -> Iterator[FakeBotAPI]:
    with FakeBotAPI(TOKEN) as server:
        yield server


@pytest.fixture
def messages_api() -> Iterator[FakeMessagesAPI]:
    with FakeMessagesAPI() as server:
        yield server


def _bot(fake: FakeBotAPI, token: str = TOKEN) -> Bot:
    return Bot(token, base_url=fake.base_url, base_file_url=fake.base_file_url)


async def test_send_edit_and_commands_round_trip(fake: FakeBotAPI) -> None:
    markup = InlineKeyboardMarkup([[InlineKeyboardButton("Restart", callback_data="restart:a")]])
    async with _bot(fake) as bot:
        assert bot.username == "test_bot"
        sent = await bot.send_message(
            -100,
            "<b>down</b> &amp; out",
            parse_mode=ParseMode.HTML,
            reply_markup=markup,
            message_thread_id=7,
        )
        assert sent.chat.type == "group"
        edited = await bot.edit_message_text(
            "<i>up</i>", chat_id=-100, message_id=sent.message_id, parse_mode=ParseMode.HTML
        )
        assert not isinstance(edited, bool)
        assert edited.text == "<i>up</i>"
        await bot.set_my_commands([("status", "Show status")])
        assert [c.command for c in await bot.get_my_commands()] == ["status"]
    [record] = fake.sent
    assert (record.chat_id, record.parse_mode, record.message_thread_id) == (-100, "HTML", 7)
    assert record.text == "<i>up</i>"
    assert record.edits == ["<i>up</i>"]
    assert record.reply_markup is None  # an edit without markup drops the keyboard, like Telegram
    assert fake.commands == [{"command": "status", "description": "Show status"}]
    assert [name for name, _ in fake.calls] == [
        "getMe",
        "sendMessage",
        "editMessageText",
        "setMyCommands",
        "getMyCommands",
    ]
    assert fake.calls[1][1]["reply_markup"] == markup.to_dict()


async def test_updates_carry_commands_and_callbacks(fake: FakeBotAPI) -> None:
    async with _bot(fake) as bot:
        sent = await bot.send_message(
            42,
            "alert",
            reply_markup=InlineKeyboardMarkup(
                [[InlineKeyboardButton("Tail", callback_data="tail:a")]]
            ),
        )
        first = fake.add_message("/status alpha", chat_id=42, user_id=7, date=1_700_000_000)
        fake.add_callback("tail:a", chat_id=42, user_id=7, message_id=sent.message_id)
        message_update, callback_update = await bot.get_updates(offset=first, timeout=1)
        assert message_update.message is not None
        assert message_update.message.text == "/status alpha"
        assert message_update.message.parse_entities(["bot_command"])
        assert message_update.effective_user == User(7, "User 7", is_bot=False)
        query = callback_update.callback_query
        assert query is not None
        assert query.data == "tail:a"
        assert query.message is not None
        assert query.message.message_id == sent.message_id
        await query.answer("ok")
        assert await bot.get_updates(offset=callback_update.update_id + 1) == ()
    assert fake.answered_callbacks[0]["text"] == "ok"


async def test_get_updates_long_polls_until_an_update_arrives(fake: FakeBotAPI) -> None:
    async with _bot(fake) as bot:
        started = time.monotonic()
        assert await bot.get_updates(timeout=dtm.timedelta(seconds=0.3)) == ()
        assert time.monotonic() - started >= 0.3
        timer = threading.Timer(0.1, fake.add_message, ("hi", 1, 1))
        timer.start()
        [update] = await bot.get_updates(timeout=3)
        assert update.message is not None
        assert update.message.text == "hi"
        assert time.monotonic() - started < 2


async def test_injected_failures(fake: FakeBotAPI, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PTB_TIMEDELTA", "true")
    async with _bot(fake) as bot:
        fake.fail_next("sendMessage", 429, retry_after=7)
        with pytest.raises(RetryAfter) as caught:
            await bot.send_message(1, "x")
        assert caught.value.retry_after == dtm.timedelta(seconds=7)
        with pytest.raises(BadRequest, match=r"(?i)can't parse entities"):
            await bot.send_message(1, "<b>open", parse_mode=ParseMode.HTML)
        with pytest.raises(BadRequest, match="too long"):
            await bot.send_message(1, "x" * 4097)
        fake.set_down(True)
        with pytest.raises(NetworkError):
            await bot.send_message(1, "x")
        fake.set_down(False)
        await bot.send_message(1, "<b>ok</b> " + "y" * 4090, parse_mode=ParseMode.HTML)
    assert len(fake.sent) == 1
    with pytest.raises(InvalidToken):
        await _bot(fake, "999:WRONG").get_me()


def test_fail_ratio_is_deterministic() -> None:
    outcomes = []
    for _ in range(2):
        server = FakeBotAPI()  # handle() needs no socket
        server.fail_ratio("sendMessage", 0.5, seed=3)
        outcomes.append(
            [
                server.handle("/bot123:TEST/sendMessage", {"chat_id": "1", "text": "a"})[0]
                for _ in range(20)
            ]
        )
    assert outcomes[0] == outcomes[1]
    assert 3 < outcomes[0].count(500) < 17
    assert set(outcomes[0]) == {200, 500}


async def test_wait_for_sent(fake: FakeBotAPI) -> None:
    async with _bot(fake) as bot:
        await bot.send_message(5, "one")
        await bot.send_message(5, "two")
    found = await fake.wait_for_sent(lambda m: m.text.startswith("t"))
    assert [m.text for m in found] == ["two"]
    assert len(fake.wait_for_sent_sync(count=2)) == 2
    with pytest.raises(TimeoutError, match="one"):
        fake.wait_for_sent_sync(lambda m: m.chat_id == 6, timeout=0.05)


def test_messages_api_reply_errors_and_stream(messages_api: FakeMessagesAPI) -> None:
    client = anthropic.Anthropic(base_url=messages_api.base_url, api_key="x", max_retries=0)
    messages_api.queue_reply("Hello there")
    messages_api.queue_error(529)
    reply = client.messages.create(
        model="claude-test", max_tokens=10, messages=[{"role": "user", "content": "hi"}]
    )
    assert reply.content[0].type == "text"
    assert reply.content[0].text == "Hello there"
    assert (reply.model, reply.usage.output_tokens) == ("claude-test", 5)
    with pytest.raises(anthropic.OverloadedError):
        client.messages.create(model="m", max_tokens=10, messages=[USER_X])
    with pytest.raises(anthropic.InternalServerError, match="no reply queued"):
        client.messages.create(model="m", max_tokens=10, messages=[USER_X])
    assert messages_api.requests[0]["messages"] == [{"role": "user", "content": "hi"}]
    assert "anthropic-version" in messages_api.headers[0]
    messages_api.queue_reply("streamed")
    with client.messages.stream(model="m", max_tokens=10, messages=[USER_X]) as stream:
        assert stream.get_final_text() == "streamed"
    assert messages_api.requests[-1]["stream"] is True


async def test_a_second_get_updates_while_one_waits_gets_409(fake: FakeBotAPI) -> None:
    url = f"{fake.base_url}{TOKEN}/getUpdates"
    async with httpx.AsyncClient(timeout=30) as client:
        first = asyncio.create_task(client.post(url, json={"timeout": 20}))
        await wait_until(lambda: fake.polls_in_flight == 1)
        second = await client.post(url, json={"timeout": 20})
        assert second.status_code == 409
        assert second.json() == {
            "ok": False,
            "error_code": 409,
            "description": "Conflict: terminated by other getUpdates request; "
            "make sure that only one bot instance is running",
        }
        assert second.json()["description"] == CONFLICT_DESCRIPTION
        assert not first.done()  # the poll already waiting is not disturbed
        assert fake.polls_in_flight == 1
        fake.add_message("hi", chat_id=1, user_id=1)
        reply = await first
        assert reply.status_code == 200
        assert [u["message"]["text"] for u in reply.json()["result"]] == ["hi"]
        assert fake.polls_in_flight == 0
        again = await client.get(url, params={"offset": "2"})  # one after another is fine
        assert again.json() == {"ok": True, "result": []}
    assert (fake.conflicts, fake.peak_polls) == (1, 2)


async def test_a_poll_whose_client_hung_up_does_not_block_the_next(fake: FakeBotAPI) -> None:
    async with _bot(fake) as bot:
        for _ in range(3):
            abandoned = asyncio.create_task(bot.get_updates(timeout=20))
            await wait_until(lambda: fake.polls_in_flight == 1)
            abandoned.cancel()
            with pytest.raises(asyncio.CancelledError):
                await abandoned
            assert await bot.get_updates(timeout=0) == ()  # at once, as a new instance would
        await wait_until(lambda: fake.polls_in_flight == 0)  # the abandoned polls gave up too
    assert (fake.conflicts, fake.peak_polls) == (0, 1)


async def test_one_updater_polls_alone_across_restarts(fake: FakeBotAPI) -> None:
    async with _bot(fake) as bot:
        for text in ("one", "two"):
            queue: asyncio.Queue[object] = asyncio.Queue()
            updater = Updater(bot, queue)
            async with updater:
                await updater.start_polling(timeout=dtm.timedelta(seconds=20), poll_interval=0)
                fake.add_message(text, chat_id=1, user_id=1)
                update = await asyncio.wait_for(queue.get(), timeout=10)
                assert isinstance(update, Update)
                assert update.message is not None
                assert update.message.text == text
                await updater.stop()  # its cleanup getUpdates must not meet its own long poll
    assert (fake.conflicts, fake.peak_polls) == (0, 1)


async def test_send_chat_action_is_recorded(fake: FakeBotAPI) -> None:
    before = time.monotonic()
    async with _bot(fake) as bot:
        assert await bot.send_chat_action(-100, ChatAction.TYPING, message_thread_id=7) is True
        assert await bot.send_chat_action(5, ChatAction.UPLOAD_DOCUMENT) is True
        with pytest.raises(BadRequest, match=r"(?i)wrong parameter action"):
            await bot.send_chat_action(5, "dancing")
    typing, upload = fake.chat_actions
    assert {k: v for k, v in typing.items() if k != "time"} == {
        "chat_id": -100,
        "action": "typing",
        "message_thread_id": 7,
    }
    assert (upload["chat_id"], upload["action"], upload["message_thread_id"]) == (
        5,
        "upload_document",
        None,
    )
    assert before <= typing["time"] <= upload["time"] <= time.monotonic()
    assert fake.sent == []


async def test_a_reply_carries_the_message_it_replies_to(fake: FakeBotAPI) -> None:
    async with _bot(fake) as bot:
        sent = await bot.send_message(42, "first")
        await bot.edit_message_text("Approve deploy?", chat_id=42, message_id=sent.message_id)
        first = fake.add_message("yes", chat_id=42, user_id=7, reply_to=sent.message_id)
        fake.add_message("and?", chat_id=42, user_id=7, reply_to=999)
        fake.add_message("in topic", chat_id=-100, user_id=7, thread_id=3, reply_to=999)
        fake.add_message("plain", chat_id=42, user_id=7)
        reply, unknown, topic, plain = await bot.get_updates(offset=first, timeout=1)
    assert reply.message is not None
    replied = reply.message.reply_to_message
    assert replied is not None
    assert (replied.message_id, replied.chat.id, replied.text) == (
        sent.message_id,
        42,
        "Approve deploy?",
    )
    assert replied.from_user is not None
    assert replied.from_user.is_bot
    assert replied.from_user.username == "test_bot"
    assert unknown.message is not None
    assert unknown.message.reply_to_message is not None
    assert unknown.message.reply_to_message.message_id == 999
    assert unknown.message.reply_to_message.chat.id == 42
    assert topic.message is not None
    assert (topic.message.message_thread_id, topic.message.is_topic_message) == (3, True)
    assert topic.message.reply_to_message is not None
    assert topic.message.reply_to_message.message_id == 999
    assert plain.message is not None
    assert plain.message.reply_to_message is None


async def test_edited_messages_are_found_by_any_version(fake: FakeBotAPI) -> None:
    async with _bot(fake) as bot:
        sent = await bot.send_message(5, "working…")
        await bot.edit_message_text("step 1", chat_id=5, message_id=sent.message_id)
        await bot.send_message(5, "other")
    [record] = await fake.wait_for_sent(lambda m: m.text == "step 1")  # the current text
    assert (record.original_text, record.texts) == ("working…", ["working…", "step 1"])
    assert fake.sent_matching(lambda m: m.text == "working…") == []
    assert fake.wait_for_sent_sync(lambda m: "working…" in m.texts) == [record]
    assert len(fake.sent_matching()) == 2


async def test_wait_for_edit(fake: FakeBotAPI) -> None:
    async with _bot(fake) as bot:
        progress = await bot.send_message(5, "working…")
        await bot.send_message(5, "done")  # never edited: its text is no edit
        waiting = asyncio.create_task(fake.wait_for_edit(lambda edits: "done" in edits[-1]))
        for step in ("step 1", "step 2", "all done"):
            await bot.edit_message_text(step, chat_id=5, message_id=progress.message_id)
        [record] = await waiting
    assert record.message_id == progress.message_id
    assert record.edits == ["step 1", "step 2", "all done"]
    assert fake.wait_for_edit_sync(lambda edits: len(edits) >= 2) == [record]
    with pytest.raises(TimeoutError, match="step 2"):
        await fake.wait_for_edit(lambda edits: "failed" in edits, within=0.05)
    with pytest.raises(TimeoutError, match="working"):
        fake.wait_for_edit_sync(lambda edits: edits == [], within=0.05)
