"""An alert is written before it is sent, and then delivered exactly once, whatever Telegram does.

The notifier talks real HTTP through python-telegram-bot to the stand-in Bot API,
which fails on purpose (429s, 500s, outages, refused HTML); the outbox is a real
SQLite file, and the restart case kills a real process with SIGKILL.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sqlite3
import sys
import textwrap
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import telegram
from telegram.request import HTTPXRequest

from bot.outbox import Alert, Notifier, Pacing
from bot.outbox_tables import outbox
from bot.pacing import OutboxRow, Pacer, fit_batch, summary_text
from bot.text import TELEGRAM_LIMIT, Button
from bot.transport import ChatTarget, TelegramTransport
from supervisor.dbengine import make_engine
from tests.conditions import wait_until
from tests.fakes.botapi import FakeBotAPI

TOKEN = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsawQ"
CHAT = ChatTarget(4242)
FAST = Pacing(per_chat_seconds=0.01, per_group_seconds=0.01, max_backoff_seconds=0.05)
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def fake() -> Iterator[FakeBotAPI]:
    with FakeBotAPI(TOKEN) as server:
        yield server


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'control.db'}"


@pytest.fixture
def engine(db_url: str) -> Iterator[sa.Engine]:
    engine = make_engine(db_url)
    yield engine
    engine.dispose()


@contextlib.asynccontextmanager
async def fresh_transport(fake: FakeBotAPI) -> AsyncIterator[TelegramTransport]:
    # Generous timeouts: on a loaded machine a timed-out request the fake did process
    # would be retried, a duplicate this suite must not mistake for a bug.
    request = HTTPXRequest(read_timeout=30, write_timeout=30, connect_timeout=30, pool_timeout=30)
    bot = telegram.Bot(TOKEN, base_url=fake.base_url, request=request)
    await bot.initialize()
    try:
        yield TelegramTransport(bot)
    finally:
        await bot.shutdown()


@pytest.fixture
async def transport(fake: FakeBotAPI) -> AsyncIterator[TelegramTransport]:
    async with fresh_transport(fake) as made:
        yield made


@contextlib.asynccontextmanager
async def running(
    engine: sa.Engine, transport: TelegramTransport, pacing: Pacing = FAST
) -> AsyncIterator[Notifier]:
    notifier = Notifier(engine, transport, CHAT, pacing=pacing)
    await notifier.start()
    try:
        yield notifier
    finally:
        await notifier.stop(flush_timeout=0.5)


def rows(engine: sa.Engine) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(sa.select(outbox).order_by(outbox.c.id)).all())


def send_calls(fake: FakeBotAPI) -> list[dict[str, Any]]:
    return [params for method, params in fake.calls if method == "sendMessage"]


def delivered_texts(fake: FakeBotAPI) -> list[str]:
    """Every alert text that reached the chat, merged messages split back into alerts."""
    texts: list[str] = []
    for message in fake.sent_matching():
        parts = message.text.split("\n\n")
        texts.extend(parts[1:] if parts[0].endswith(" alerts</b>") else parts)
    return texts


async def test_alert_is_committed_before_any_send(
    fake: FakeBotAPI, engine: sa.Engine, transport: TelegramTransport
) -> None:
    fake.set_down()
    async with running(engine, transport) as notifier:
        await notifier.enqueue(Alert("<b>demo</b> failed"))
        [row] = rows(engine)  # committed before enqueue returned, before any request
        assert (row.text, row.status) == ("<b>demo</b> failed", "pending")
        await wait_until(lambda: rows(engine)[0].attempts >= 1)
        [row] = rows(engine)
        assert row.status == "pending"
        assert "Bad Gateway" in row.last_error
        assert fake.sent == []
        fake.set_down(False)
        await fake.wait_for_sent()
        assert await notifier.wait_idle(2)
    [row] = rows(engine)
    assert (row.status, row.message_id) == ("sent", fake.sent[0].message_id)
    assert [m.text for m in fake.sent] == ["<b>demo</b> failed"]


async def test_retry_after_is_honoured_and_not_counted_as_a_failure(
    fake: FakeBotAPI, engine: sa.Engine, transport: TelegramTransport
) -> None:
    fake.fail_next("sendMessage", 429, retry_after=1)
    async with running(engine, transport) as notifier:
        started = time.monotonic()
        await notifier.enqueue(Alert("slow down"))
        await fake.wait_for_sent(timeout=3)
        elapsed = time.monotonic() - started
        assert await notifier.wait_idle(1)
    assert elapsed >= 0.95
    assert len(send_calls(fake)) == 2
    assert [m.text for m in fake.sent] == ["slow down"]
    [row] = rows(engine)
    assert (row.status, row.attempts) == ("sent", 0)


async def test_server_errors_are_retried_until_delivered_once(
    fake: FakeBotAPI, engine: sa.Engine, transport: TelegramTransport
) -> None:
    fake.fail_next("sendMessage", 500, count=3)
    async with running(engine, transport) as notifier:
        await notifier.enqueue(Alert("eventually"))
        await fake.wait_for_sent()
        assert await notifier.wait_idle(1)
    assert [m.text for m in fake.sent] == ["eventually"]
    assert len(send_calls(fake)) == 4
    [row] = rows(engine)
    assert (row.status, row.attempts) == ("sent", 3)


async def test_flaky_api_delivers_every_alert_exactly_once(
    fake: FakeBotAPI, engine: sa.Engine, transport: TelegramTransport
) -> None:
    fake.fail_ratio("sendMessage", 0.3, seed=7)
    expected = [f"alert {n}" for n in range(40)]
    async with running(engine, transport) as notifier:
        for text in expected:
            await notifier.enqueue(Alert(text, mergeable=False))
        assert await notifier.wait_idle(15)
    assert sorted(m.text for m in fake.sent) == sorted(expected)
    assert len(send_calls(fake)) > 40  # failures really happened
    assert {row.status for row in rows(engine)} == {"sent"}


async def test_incident_key_edits_the_message_sent_first(
    fake: FakeBotAPI, engine: sa.Engine, transport: TelegramTransport
) -> None:
    async with running(engine, transport) as notifier:
        for text in ("demo: started", "demo: retrying", "demo: finished"):
            await notifier.enqueue(
                Alert(text, key="run:demo", buttons=(Button("Logs", "logs:demo"),))
            )
            assert await notifier.wait_idle(1)
    [message] = fake.sent
    assert message.text == "demo: finished"
    assert message.edits == ["demo: retrying", "demo: finished"]
    assert len(send_calls(fake)) == 1
    assert {row.message_id for row in rows(engine)} == {message.message_id}


async def test_deleted_incident_message_is_sent_again(
    fake: FakeBotAPI, engine: sa.Engine, transport: TelegramTransport
) -> None:
    async with running(engine, transport) as notifier:
        await notifier.enqueue(Alert("first", key="k"))
        assert await notifier.wait_idle(1)
        fake.sent.clear()  # the user deleted it: editing now says "message to edit not found"
        await notifier.enqueue(Alert("second", key="k"))
        await notifier.enqueue(Alert("third", key="k"))
        await fake.wait_for_sent(lambda m: m.text == "third")
        assert await notifier.wait_idle(1)
    assert [m.text for m in fake.sent] == ["third"]


async def test_newer_alert_with_same_key_replaces_pending_one_in_place(
    fake: FakeBotAPI, engine: sa.Engine, transport: TelegramTransport
) -> None:
    notifier = Notifier(engine, transport, CHAT, pacing=FAST)
    await notifier.enqueue(Alert("v1", key="incident"))
    await notifier.enqueue(Alert("unrelated", mergeable=False))
    await notifier.enqueue(Alert("v2", key="incident"))
    assert [(r.key, r.text) for r in rows(engine)] == [("incident", "v2"), (None, "unrelated")]
    await notifier.start()
    assert await notifier.wait_idle(2)
    await notifier.stop()
    assert [m.text for m in fake.sent] == ["v2", "unrelated"]
    assert all(m.edits == [] for m in fake.sent)


async def test_pending_alerts_survive_a_stop_and_nothing_is_sent_twice(
    fake: FakeBotAPI, engine: sa.Engine, transport: TelegramTransport
) -> None:
    async with running(engine, transport) as first:
        await first.enqueue(Alert("before outage"))
        assert await first.wait_idle(1)
        fake.set_down()
        await first.enqueue(Alert("during outage 1", mergeable=False))
        await first.enqueue(Alert("during outage 2", mergeable=False))
        await first.stop(flush_timeout=0.2)
    assert [r.status for r in rows(engine)] == ["sent", "pending", "pending"]
    fake.set_down(False)
    # A restarted bot has a new HTTP client: the old one's pool may hold a connection
    # whose request was cancelled mid-flight by stop().
    async with fresh_transport(fake) as restarted, running(engine, restarted) as second:
        assert await second.wait_idle(2)
    assert [m.text for m in fake.sent] == ["before outage", "during outage 1", "during outage 2"]


_KILLED_CHILD = """
import asyncio, sys
from bot.outbox import Alert, Notifier
from bot.transport import ChatTarget
from supervisor.dbengine import make_engine

class Hanging:  # the request never completes: the process dies mid-send
    async def send(self, target, message, *, silent=False):
        await asyncio.Event().wait()
    async def edit(self, target, message_id, message):
        await asyncio.Event().wait()

async def main():
    notifier = Notifier(make_engine(sys.argv[1]), Hanging(), ChatTarget(4242))
    await notifier.start()
    for n in range(3):
        await notifier.enqueue(Alert(f"queued {n}", mergeable=False))
    print("queued", flush=True)
    await asyncio.sleep(30)

asyncio.run(main())
"""


async def test_alerts_of_a_killed_process_are_delivered_after_restart(
    fake: FakeBotAPI, engine: sa.Engine, transport: TelegramTransport, db_url: str
) -> None:
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        textwrap.dedent(_KILLED_CHILD),
        db_url,
        stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:
        assert child.stdout is not None
        assert await asyncio.wait_for(child.stdout.readline(), 10) == b"queued\n"
    finally:
        child.kill()  # SIGKILL: no stop(), no flush
        await child.wait()
    assert child.returncode == -signal.SIGKILL
    assert [r.status for r in rows(engine)] == ["pending"] * 3
    async with running(engine, transport) as notifier:
        assert await notifier.wait_idle(2)
    assert [m.text for m in fake.sent] == ["queued 0", "queued 1", "queued 2"]


@pytest.mark.parametrize(
    "pacing",
    [
        Pacing(per_chat_seconds=0.25, max_backoff_seconds=0.05),
        Pacing(per_chat_seconds=0.01, gather_seconds=0.2),
    ],
    ids=["paced", "gathered"],
)
async def test_burst_is_coalesced_into_few_messages_listing_every_alert(
    fake: FakeBotAPI, engine: sa.Engine, transport: TelegramTransport, pacing: Pacing
) -> None:
    expected = [f"<b>worker-{n}</b> error: boom" for n in range(50)]
    async with running(engine, transport, pacing) as notifier:
        for text in expected:
            await notifier.enqueue(Alert(text, buttons=(Button("Logs", "logs:x"),)))
            await asyncio.sleep(0.01)
        assert await notifier.wait_idle(2)
    assert len(fake.sent) < 15
    assert sorted(delivered_texts(fake)) == sorted(expected)
    merged = [m for m in fake.sent if m.text.count("\n\n") > 0]
    assert merged
    logs = {"inline_keyboard": [[{"text": "Logs", "callback_data": "logs:x"}]]}
    assert all(m.reply_markup == logs for m in merged)  # kept, and shown once
    assert merged[0].text.startswith(f"<b>{merged[0].text.count(chr(10) * 2)} alerts</b>")
    assert len({r.message_id for r in rows(engine)}) == len(fake.sent)


async def test_mute_holds_ordinary_alerts_passes_critical_and_summarises_on_unmute(
    fake: FakeBotAPI, engine: sa.Engine, transport: TelegramTransport
) -> None:
    async with running(engine, transport) as notifier:
        await notifier.mute(datetime.now(UTC) + timedelta(hours=1))
        await notifier.enqueue(Alert("<b>a</b> failed"))
        await notifier.enqueue(Alert("b stalled\ndetails here", key="run:b"))
        await notifier.enqueue(Alert("c is hung", critical=True))
        await fake.wait_for_sent()
        assert await notifier.wait_idle(1)
        assert [m.text for m in fake.sent] == ["c is hung"]
        assert [r.status for r in rows(engine)] == ["held", "held", "sent"]
        assert await notifier.unmute() == 2
        assert await notifier.muted_until() is None
        await fake.wait_for_sent(count=2)
        assert await notifier.wait_idle(1)
    summary = fake.sent[1].text
    assert summary == "<b>While muted: 2 alerts</b>\n• a failed\n• b stalled"
    assert [r.status for r in rows(engine)] == ["summarised", "summarised", "sent", "sent"]


async def test_expired_mute_is_summarised_by_the_worker(
    fake: FakeBotAPI, engine: sa.Engine, transport: TelegramTransport
) -> None:
    async with running(engine, transport) as notifier:
        await notifier.mute(datetime.now(UTC) + timedelta(seconds=0.3))
        await notifier.enqueue(Alert("quiet one"))
        assert await notifier.muted_until() is not None
        [message] = await fake.wait_for_sent(timeout=2)
    assert message.text == "<b>While muted: 1 alert</b>\n• quiet one"
    assert await notifier.muted_until() is None


async def test_mute_survives_a_new_notifier(
    engine: sa.Engine, transport: TelegramTransport, db_url: str
) -> None:
    until = datetime.now(UTC) + timedelta(hours=2)
    async with running(engine, transport) as first:
        await first.mute(until)
    second_engine = make_engine(db_url)
    try:
        async with running(second_engine, transport) as second:
            assert await second.muted_until() == until
            await second.enqueue(Alert("after restart"))
        assert rows(second_engine)[-1].status == "held"
    finally:
        second_engine.dispose()


async def test_undeliverable_alert_fails_alone_and_the_rest_go_out(
    fake: FakeBotAPI,
    engine: sa.Engine,
    transport: TelegramTransport,
    caplog: pytest.LogCaptureFixture,
) -> None:
    notifier = Notifier(engine, transport, CHAT, pacing=FAST)
    await notifier.enqueue(Alert("<b>broken markup"))  # Telegram: can't parse entities
    await notifier.enqueue(Alert("fine"))
    with caplog.at_level(logging.INFO):
        await notifier.start()
        assert await notifier.wait_idle(2)
        await notifier.enqueue(Alert("after"))
        assert await notifier.wait_idle(1)
        await notifier.stop()
    assert [m.text for m in fake.sent] == ["fine", "after"]
    broken = rows(engine)[0]
    assert broken.status == "failed"
    assert "parse entities" in broken.last_error
    [error] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert "broken markup" in error.getMessage()
    ours = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("bot."))
    assert "merged message refused" in ours
    assert TOKEN.split(":")[1] not in ours


# -- the rules themselves, with a fake clock ---------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_pacer_spaces_chats_groups_and_honours_holds() -> None:
    clock = Clock()
    pacer = Pacer(Pacing(per_chat_seconds=1.0, per_group_seconds=3.0), clock)
    private, group = ChatTarget(1), ChatTarget(-100)
    assert pacer.ready_in(private) == 0
    pacer.record(private)
    pacer.record(group)
    assert pacer.ready_in(private) == pytest.approx(1.0)
    assert pacer.ready_in(group) == pytest.approx(3.0)
    pacer.hold(private, 5.0)
    clock.now += 1.0
    assert pacer.ready_in(private) == pytest.approx(4.0)
    assert pacer.ready_in(ChatTarget(2)) == 0


def test_pacer_keeps_the_global_rate() -> None:
    clock = Clock()
    pacer = Pacer(Pacing(per_chat_seconds=0.0, global_per_second=3), clock)
    for chat in range(3):
        pacer.record(ChatTarget(chat))
        clock.now += 0.1
    assert pacer.ready_in(ChatTarget(99)) == pytest.approx(0.7)
    clock.now = 101.0  # the first request has left the one-second window
    assert pacer.ready_in(ChatTarget(99)) == 0


def test_merged_and_summary_messages_fit_telegram_limit() -> None:
    long_rows = [OutboxRow(n, None, "x" * 1000, "[]", True, True) for n in range(10)]
    kept = fit_batch(long_rows)
    assert len(kept) == 4
    texts = [f"<i>alert {n}</i> " + "y" * 300 for n in range(100)]
    summary = summary_text(texts)
    assert len(summary) <= TELEGRAM_LIMIT
    assert summary.startswith("<b>While muted: 100 alerts</b>\n• alert 0 ")
    shown = summary.count("\n• ")
    assert summary.endswith(f"… and {100 - shown} more")
    assert 0 < shown < 100


async def test_an_alert_the_locked_db_refuses_is_kept_and_delivered_once_it_frees(
    db_url: str, fake: FakeBotAPI, transport: TelegramTransport, caplog: pytest.LogCaptureFixture
) -> None:
    impatient = sa.create_engine(db_url, connect_args={"timeout": 0.05})
    async with running(impatient, transport) as notifier:
        await notifier.enqueue(Alert("before the lock"))
        await fake.wait_for_sent(lambda m: "before the lock" in m.text)
        holder = sqlite3.connect(db_url.removeprefix("sqlite:///"), isolation_level=None)
        holder.execute("BEGIN EXCLUSIVE")
        await notifier.enqueue(Alert("while locked"))  # refused: kept in memory, not raised
        holder.execute("COMMIT")
        holder.close()
        await fake.wait_for_sent(lambda m: "while locked" in m.text, timeout=10)
    impatient.dispose()
    assert "keeping it in memory" in caplog.text
    assert delivered_texts(fake).count("while locked") == 1
