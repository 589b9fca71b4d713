"""``/logs NAME``: the last megabyte of a workflow's log as a file, sent directly, retried.

The file goes up as a multipart ``sendDocument`` to the stand-in Bot API,
which records the bytes, the file name and the caption as Telegram would
receive them. A file that cannot be sent becomes one line through the outbox.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from bot import telegram_app
from bot.commands import LOG_FILE_BYTES
from tests.bot_harness import COMMAND_CHAT, BotRig, bot_running
from tests.console_harness import console_running
from tests.fakes.botapi import SentMessage

LINES = 15_000  # about 1.5 MB: more than one file's worth
CHATTY = """
for i in range({lines}):
    print(f'line {{i:07d}} ' + 'x' * 90)
print('the end', flush=True)
"""


def chatty(lines: int = LINES) -> dict[str, Any]:
    """A workflow that prints ``lines`` numbered lines and finishes."""
    code = CHATTY.format(lines=lines)
    return {"name": "chatty", "command": [sys.executable, "-c", code], "restart": "never"}


@pytest.fixture
async def rig(tmp_path: Path) -> object:
    async with bot_running(tmp_path, [chatty()]) as running:
        await running.wait_state("chatty", "finished", within=10)
        yield running


def documents(rig: BotRig) -> list[SentMessage]:
    return rig.fake.sent_matching(lambda m: m.document is not None)


async def ask_for_logs(rig: BotRig) -> SentMessage:
    [reply] = await rig.send("/logs chatty")
    return reply


async def test_logs_sends_the_last_megabyte_from_a_line_start_as_a_file(rig: BotRig) -> None:
    reply = await ask_for_logs(rig)
    assert reply.document is not None
    assert reply.document.filename == "chatty.log"
    data = reply.document.data
    assert LOG_FILE_BYTES - 200 < len(data) <= LOG_FILE_BYTES
    assert data.startswith(b"line ")  # a whole line, not the tail of one
    assert b"the end\n" in data[-200:]
    assert b"line 0000000 " not in data  # the start of a 1.5 MB log is left out
    assert reply.text.startswith("<b>chatty</b>: the last 1.0 MB of its log")
    assert reply.chat_id == COMMAND_CHAT
    # The file is the whole answer: no text reply beside it.
    assert not rig.fake.sent_matching(lambda m: m.chat_id == COMMAND_CHAT and m.document is None)


async def test_a_short_log_is_sent_whole(tmp_path: Path) -> None:
    async with bot_running(tmp_path, [chatty(lines=3)]) as rig:
        await rig.wait_state("chatty", "finished", within=10)
        reply = await ask_for_logs(rig)
        assert reply.document is not None
        assert b"line 0000000 " in reply.document.data
        assert "bytes of its log" in reply.text


async def test_a_429_is_waited_out_and_the_file_arrives_once(rig: BotRig) -> None:
    rig.fake.fail_next("sendDocument", 429, retry_after=1)
    await ask_for_logs(rig)
    tries = [call for call, _ in rig.fake.calls if call == "sendDocument"]
    assert len(tries) == 2
    assert len(documents(rig)) == 1


async def test_a_file_that_cannot_be_sent_is_one_line_through_the_outbox(
    rig: BotRig, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(telegram_app, "DOCUMENT_MAX_WAIT_SECONDS", 1.5)
    rig.fake.fail_next("sendDocument", 502, count=10)
    text = (await ask_for_logs(rig)).text
    assert text.startswith("Could not send chatty.log (")
    tries = [call for call, _ in rig.fake.calls if call == "sendDocument"]
    assert len(tries) == 2  # waited 1 s after the first; 2 s more would pass the bound
    rig.fake.clear_failures()
    rig.fake.fail_next("sendDocument", 400)  # refused: no retry at all
    assert (await ask_for_logs(rig)).text.startswith("Could not send chatty.log")
    assert not documents(rig)


async def test_a_log_with_nothing_in_it_is_a_line_not_an_empty_file(tmp_path: Path) -> None:
    silent = {"name": "silent", "command": [sys.executable, "-c", "pass"], "autostart": False}
    async with bot_running(tmp_path, [silent]) as rig:
        assert await rig.ask("/logs silent") == "<b>silent</b> has printed nothing yet."
        assert "unknown workflow 'nope'" in await rig.ask("/logs nope")


async def test_logs_in_the_console_say_where_the_file_is(tmp_path: Path) -> None:
    async with console_running(tmp_path, [chatty(lines=3)]) as console:
        await console.wait_printed("Type /help")  # started
        await console.wait_state("chatty", "finished")
        console.type("/logs chatty")
        await console.wait_printed("📎 chatty: the last")
        log_file = console.supervisor.settings.logs_dir / "chatty.log"
        assert f"the file is {log_file}" in console.printed
        assert "line 0000001" not in console.printed  # not dumped on the terminal
