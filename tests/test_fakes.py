"""The fake servers must behave like the real APIs as seen through the real client libraries."""

from __future__ import annotations

import datetime as dtm
import threading
import time
from collections.abc import Iterator

import anthropic
import pytest
from anthropic.types import MessageParam
from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup, User
from telegram.constants import ParseMode
from telegram.error import BadRequest, InvalidToken, NetworkError, RetryAfter

from tests.fakes.botapi import FakeBotAPI
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
