"""Every chat command, end to end: a Telegram update in, python-telegram-bot, a real reply out.

Workflows are real processes; the stand-in Bot API checks every message is
valid Telegram HTML within 4096 characters, so a reply that would be refused
by Telegram fails here too.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from bot.commands import COMMANDS, Follow
from tests.bot_harness import (
    ALERT_CHAT,
    THREAD,
    TOKEN,
    BotRig,
    bot_running,
    is_alert,
    worker_table,
)
from tests.conditions import wait_until
from tests.fakes.botapi import FakeBotAPI


@pytest.fixture
async def rig(tmp_path: Path) -> object:
    async with bot_running(tmp_path) as running:
        yield running


async def test_status_lists_every_workflow_and_escapes_summaries(rig: BotRig) -> None:
    rig.order("worker", summary="<script>alert(1)</script> & more")
    await rig.wait_state("worker", "running")
    for _ in range(100):
        text = await rig.ask("/status")
        if "&lt;script&gt;" in text:
            break
        await asyncio.sleep(0.05)
    assert "<b>2 workflows</b>" in text
    assert "<b>worker</b>" in text
    assert "<b>demo</b>" in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; more" in text


async def test_status_of_one_workflow_has_the_details_and_recent_commands(rig: BotRig) -> None:
    await rig.wait_state("worker", "running")
    assert "restarted" in await rig.ask("/restart worker")
    rig.order("worker", error="disk <full>")
    await rig.alert("disk &lt;full&gt;")
    text = await rig.ask("/status worker")
    assert "pid " in text
    assert "uptime: " in text
    assert "restarts: 0/1" in text
    assert "<b>last error</b>\n<pre>disk &lt;full&gt;</pre>" in text
    assert "<b>recent commands</b>" in text
    assert "/restart → ok" in text


async def test_workflows_and_help(rig: BotRig) -> None:
    names = await rig.ask("/workflows")
    assert "<code>worker</code>" in names
    assert "<code>demo</code>" in names
    text = await rig.ask("/help")
    for command in COMMANDS:
        assert f"/{command}" in text


async def test_stop_start_pause_resume(rig: BotRig) -> None:
    await rig.wait_state("worker", "running")
    assert "⏹ stopped" in await rig.ask("/stop worker")
    [status] = await rig.supervisor.status("worker")
    assert status.state == "stopped"
    assert status.pid is None
    assert "not running" in await rig.ask("/stop worker")
    assert "▶️ started (pid" in await rig.ask("/start worker")
    assert "already running" in await rig.ask("/start worker")
    assert "⏸ paused" in await rig.ask("/pause worker")
    await rig.wait_state("worker", "paused")
    assert "resume it instead" in await rig.ask("/start worker")
    assert "▶️ resumed" in await rig.ask("/resume worker")
    await rig.wait_state("worker", "running")


async def test_an_unknown_name_lists_the_known_ones(rig: BotRig) -> None:
    text = await rig.ask("/restart <nope>")
    assert text == "unknown workflow '&lt;nope&gt;'; known: worker, demo"
    text = await rig.ask("/status nope")
    assert "known: worker, demo" in text


async def test_bad_arguments_and_unknown_commands(rig: BotRig) -> None:
    for bad in ("0", "-5", "lots"):
        text = await rig.ask(f"/tail worker {bad}")
        assert "usage: /tail NAME [LINES] with LINES from 1 to 200" in text
    assert "usage: /mute [NAME] [DURATION]" in await rig.ask("/mute 1h 2h")
    assert "bad duration" in await rig.ask("/mute 2x")
    assert await rig.ask("/frobnicate") == "unknown command /frobnicate; try /help"
    assert "one workflow at a time" in await rig.ask("/restart worker demo")


async def test_tail_with_a_superscript_digit_gets_the_usage_line(
    rig: BotRig, caplog: pytest.LogCaptureFixture
) -> None:
    # '²'.isdigit() is True, but int('²') raises: this once became an apology and a traceback.
    text = await rig.ask("/tail worker ²")
    assert "usage: /tail NAME [LINES] with LINES from 1 to 200" in text
    assert "command /tail" not in caplog.text


async def test_mute_and_unmute(rig: BotRig) -> None:
    text = await rig.ask("/mute")
    assert "🔕 Muted for 1h" in text
    assert await rig.bot.service.notifier.muted_until() is not None
    assert "Muted for 30m" in await rig.ask("/mute 30m")
    assert "Alerts on again" in await rig.ask("/unmute")
    assert await rig.bot.service.notifier.muted_until() is None


async def test_tail_shows_the_last_lines_in_pre(rig: BotRig) -> None:
    await rig.wait_state("worker", "running")
    rig.order("worker", print="hello <world> & you")
    await asyncio.sleep(0.3)
    text = await rig.ask("/tail worker 5")
    assert text.startswith("<b>worker</b> log\n<pre>")
    assert text.endswith("</pre>")
    assert "hello &lt;world&gt; &amp; you" in text
    assert len(text.split("<pre>", 1)[1].splitlines()) <= 5


async def test_tail_of_a_huge_line_is_cut_from_the_top_and_fits(rig: BotRig) -> None:
    await rig.wait_state("worker", "running")
    huge = "<" + "x" * 9_998 + "END"
    rig.order("worker", print=huge)
    log = rig.supervisor.settings.logs_dir / "worker.log"
    await wait_until(lambda: "xEND" in log.read_text(encoding="utf-8"), 20)
    text = await rig.ask("/tail worker 200")
    assert "xEND" in text  # the newest end is kept
    assert "&lt;xx" not in text  # the start was cut off
    assert len(text) <= 4096  # and the fake accepted it as valid HTML


async def test_stopping_the_bot_does_not_wait_for_a_follow(tmp_path: Path) -> None:
    async with bot_running(tmp_path) as rig:
        rig.bot.service.router.follow = Follow(every=0.1, duration=60)
        await rig.send("/tail worker follow")
        loop = asyncio.get_running_loop()
        started = loop.time()
    assert loop.time() - started < 4
    assert rig.fake.sent_matching(is_alert("going down"))


async def test_commands_registered_and_hello_and_goodbye(tmp_path: Path) -> None:
    async with bot_running(tmp_path) as rig:
        [hello] = rig.fake.sent_matching(is_alert("bot up"))
        assert "worker, demo" in hello.text
        assert hello.message_thread_id == THREAD
        for _ in range(100):
            if rig.fake.commands is not None:
                break
            await asyncio.sleep(0.02)
        assert rig.fake.commands is not None
        assert [c["command"] for c in rig.fake.commands] == list(COMMANDS)
        assert not rig.fake.sent_matching(is_alert("going down"))
    [bye] = rig.fake.sent_matching(is_alert("going down"))
    assert bye.chat_id == ALERT_CHAT
    assert not await rig.supervisor.status("worker") or all(
        s.pid is None for s in await rig.supervisor.status()
    )


async def test_a_failing_command_is_an_apology_and_the_bot_goes_on(rig: BotRig) -> None:
    async def broken(name: str | None = None) -> list[object]:
        raise RuntimeError("boom")

    original = rig.bot.service.router.api
    rig.bot.service.router.api = type(  # a supervisor whose status() is broken
        "Broken",
        (),
        {"names": original.names, "nodes": original.nodes, "status": staticmethod(broken)},
    )()
    assert "Sorry, /status failed: RuntimeError" in await rig.ask("/status")
    rig.bot.service.router.api = original
    assert "<b>2 workflows</b>" in await rig.ask("/status")


async def test_commands_in_the_alert_chat_are_answered_there(rig: BotRig) -> None:
    [reply] = await rig.send("/workflows@test_bot", chat=ALERT_CHAT)
    assert "<b>Workflows</b>" in reply.text


async def test_polling_that_fails_to_start_is_retried(tmp_path: Path) -> None:
    fake = FakeBotAPI(TOKEN).start()
    fake.fail_next("deleteWebhook", 502)  # the first step of starting to poll
    try:
        async with bot_running(tmp_path, [worker_table(tmp_path)], fake=fake) as rig:
            assert "<b>Workflows</b>" in await rig.ask("/workflows")
    finally:
        fake.stop()
