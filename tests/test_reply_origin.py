"""A reply to an alert is about that alert's workflow even when it comes before the outbox
has recorded the alert's message id (Telegram took it; its row is still being written)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from bot.outbox import Alert
from bot.text import Message
from bot.transport import ChatTarget
from supervisor.dbengine import make_engine
from tests.outbox_rig import CHAT, Clock, RecordingChat, notifier_on

pytestmark = pytest.mark.timeout(20)


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[sa.Engine]:
    engine = make_engine(f"sqlite:///{tmp_path / 'control.db'}")
    yield engine
    engine.dispose()


class HeldChat(RecordingChat):
    """Telegram has taken the message (the person sees it) before the bot hears so."""

    def __init__(self) -> None:
        super().__init__()
        self.taken = asyncio.Event()
        self.answer = asyncio.Event()

    async def send(self, target: ChatTarget, message: Message, *, silent: bool = False) -> int:
        message_id = await super().send(target, message, silent=silent)
        self.taken.set()
        await self.answer.wait()
        return message_id


async def test_a_reply_before_its_message_is_recorded_still_finds_its_workflow(
    engine: sa.Engine,
) -> None:
    chat = HeldChat()
    async with notifier_on(engine, chat, Clock()) as notifier:
        await notifier.enqueue(Alert("❗ <b>api</b> error", workflow="api"))
        await asyncio.wait_for(chat.taken.wait(), 10)
        lookup = asyncio.create_task(notifier.origin(CHAT, 1))  # the reply, early
        await asyncio.sleep(0)  # it has looked once and found nothing yet
        chat.answer.set()
        origin = await asyncio.wait_for(lookup, 10)
        assert origin is not None
        assert origin.workflow == "api"
        assert await notifier.origin(CHAT, 999) is None  # a message it never sent: no wait
