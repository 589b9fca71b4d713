"""History is kept for a while, not forever; nothing undelivered is ever dropped."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa

from bot.outbox import KEEP_DELIVERED_SECONDS, Alert, Notifier
from bot.outbox_tables import outbox
from bot.text import Message
from bot.transport import ChatTarget
from supervisor.control import ControlDB
from supervisor.dbengine import make_engine
from supervisor.events import Started


class Nowhere:
    """A transport that is down: nothing gets delivered."""

    async def send(self, target: ChatTarget, message: Message, *, silent: bool = False) -> int:
        raise ConnectionError("down")

    async def edit(self, target: ChatTarget, message_id: int, message: Message) -> None:
        raise ConnectionError("down")


def test_old_events_are_forgotten_recent_ones_kept(tmp_path: Path) -> None:
    control = ControlDB(f"sqlite:///{tmp_path / 'control.db'}")
    now = datetime.now(UTC)
    control.record(Started(workflow="w", time=now - timedelta(days=100), pid=1))
    control.record(Started(workflow="w", time=now - timedelta(days=1), pid=2))
    assert control.forget_events(now - timedelta(days=90)) == 1
    assert [record.detail for record in control.recent("w", 10)] == ["pid 2"]
    control.close()


async def test_old_delivered_alerts_are_forgotten_old_pending_ones_kept(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'control.db'}")
    notifier = Notifier(engine, Nowhere(), ChatTarget(1))
    await notifier.enqueue(Alert("delivered long ago"))
    await notifier.enqueue(Alert("never delivered"))
    long_ago = time.time() - KEEP_DELIVERED_SECONDS - 60
    with engine.begin() as conn:
        conn.execute(sa.update(outbox).values(created_at=long_ago))
        conn.execute(
            sa.update(outbox).where(outbox.c.text == "delivered long ago").values(status="sent")
        )
    await notifier.start()
    await notifier.stop(flush_timeout=0)
    with engine.connect() as conn:
        left = conn.execute(sa.select(outbox.c.text, outbox.c.status)).all()
    engine.dispose()
    assert [tuple(row) for row in left] == [("never delivered", "pending")]
