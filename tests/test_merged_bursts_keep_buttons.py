"""A burst merged into one message keeps every alert's buttons: one keyboard row per workflow.

Each button says its workflow; a repeat is shown once; what Telegram would
refuse (callback data over 64 bytes, more than 100 buttons) is left out,
and the message still goes. Checked against the stand-in Bot API, which
refuses what Telegram refuses.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import telegram

from bot.outbox import Alert, Notifier
from bot.pacing import OutboxRow, encode_buttons, merged_buttons
from bot.text import Button
from bot.transport import TelegramTransport
from supervisor.dbengine import make_engine
from tests.fakes.botapi import FakeBotAPI
from tests.outbox_rig import CHAT, UNPACED

TOKEN = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsawQ"


def actions(workflow: str) -> tuple[Button, ...]:
    return (
        Button("Restart", f"restart:{workflow}"),
        Button("Tail", f"tail:{workflow}"),
        Button("Mute 1h", f"mute:{workflow}:1h"),
    )


def row(n: int, workflow: str | None, buttons: tuple[Button, ...]) -> OutboxRow:
    return OutboxRow(n, None, f"alert {n}", encode_buttons(buttons), True, True, workflow=workflow)


def test_buttons_are_grouped_by_workflow_labelled_and_shown_once() -> None:
    rows = [
        row(1, "api", actions("api")),
        row(2, "etl", actions("etl")),
        row(3, "api", actions("api")),
        row(4, None, (Button("Status", "status"),)),
    ]
    assert [b.label for b in merged_buttons(rows)] == [
        "Restart api",
        "Tail api",
        "Mute 1h api",
        "Restart etl",
        "Tail etl",
        "Mute 1h etl",
        "Status",
    ]


def test_what_telegram_would_refuse_is_left_out() -> None:
    too_long = Button("Tail", "tail:" + "x" * 60)
    many = [row(n, f"w{n}", (*actions(f"w{n}"), too_long)) for n in range(40)]
    kept = merged_buttons(many)
    assert len(kept) == 100
    assert all(len(b.data.encode()) <= 64 for b in kept)


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[sa.Engine]:
    engine = make_engine(f"sqlite:///{tmp_path / 'control.db'}")
    yield engine
    engine.dispose()


def keyboard_rows(markup: Any) -> list[list[str]]:
    return [[button["text"] for button in line] for line in markup["inline_keyboard"]]


async def test_a_merged_burst_shows_one_row_per_workflow_in_the_chat(engine: sa.Engine) -> None:
    with FakeBotAPI(TOKEN) as fake:
        bot = telegram.Bot(TOKEN, base_url=fake.base_url)
        await bot.initialize()
        notifier = Notifier(engine, TelegramTransport(bot), CHAT, pacing=UNPACED)
        try:
            for name in ("api", "etl", "api"):
                await notifier.enqueue(Alert(f"<b>{name}</b> error", actions(name), workflow=name))
            await notifier.start()
            [merged] = await fake.wait_for_sent()
            assert await notifier.wait_idle(2)
        finally:
            await notifier.stop()
            await bot.shutdown()
    assert merged.text.startswith("<b>3 alerts</b>")
    assert keyboard_rows(merged.reply_markup) == [
        ["Restart api", "Tail api", "Mute 1h api"],
        ["Restart etl", "Tail etl", "Mute 1h etl"],
    ]
