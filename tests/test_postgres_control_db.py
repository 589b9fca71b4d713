"""The control DB on Postgres, for several hosts sharing one history.

Runs when ``TEST_POSTGRES_URL`` names a server where the test may create a
database of its own (the ``postgres_url`` fixture); ``.ci/run`` points it at
the local server, and a machine without one skips these tests.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from bot.audit import CONSOLE, Actor, AuditLog
from bot.outbox import Alert, Notifier, Pacing
from bot.text import Message
from bot.transport import ChatTarget
from supervisor.control import ControlDB, Memory
from supervisor.events import Crashed

pytestmark = pytest.mark.timeout(30)
GROUP = -1001234567890  # a supergroup id: more than 32 bits


class Recorder:
    """A transport that keeps what it was asked to deliver."""

    def __init__(self) -> None:
        self.sent: list[str] = []

    async def send(self, target: ChatTarget, message: Message, *, silent: bool = False) -> int:
        self.sent.append(message.text)
        return 10_000_000_000 + len(self.sent)  # message ids grow past 32 bits too

    async def edit(self, target: ChatTarget, message_id: int, message: Message) -> None:
        self.sent.append(message.text)


async def test_events_memory_outbox_and_audit_on_postgres(postgres_url: str) -> None:
    url = postgres_url
    name = f"wf-{uuid.uuid4().hex[:8]}"
    control = ControlDB(url)
    now = datetime.now(UTC)
    crash = Crashed(
        workflow=name,
        time=now,
        incident="i1",
        attempt=0,
        max_attempts=3,
        will_restart=True,
        exit_code=1,
    )
    control.record(crash)
    control.save_memory(name, Memory(restarts=2, last_error_seen="boom", last_error_id=7))
    control.save_memory(name, Memory(restarts=3, last_error_seen="boom", last_error_id=8))
    [record] = control.recent(name, 5)
    assert (record.kind, record.detail) == ("crashed", "exit code 1")
    assert control.load_memory()[name] == Memory(
        restarts=3, last_error_seen="boom", last_error_id=8
    )
    control.close()

    engine = sa.create_engine(url)
    audit = AuditLog(engine)
    audit.record(
        Actor(GROUP, 5_000_000_000, "alice"),
        "restart",
        [name],
        outcome="ok",
        detail="restarted",
        workflow=name,
    )
    audit.record(CONSOLE, "stop", [name], outcome="refused", detail="not running", workflow=name)
    assert [line.split(": ", 1)[1] for line in audit.recent(name)] == [
        "/stop → refused",
        "/restart → ok",
    ]
    transport = Recorder()
    notifier = Notifier(engine, transport, ChatTarget(GROUP), pacing=Pacing(0, 0, 1000))
    await notifier.start()
    key = f"incident:{name}"
    await notifier.enqueue(Alert(f"{name} crashed", key=key))
    assert await notifier.wait_idle(5)
    await notifier.enqueue(Alert(f"{name} restarted", key=key))
    await notifier.mute(datetime.now(UTC) + timedelta(hours=1))
    await notifier.enqueue(Alert(f"{name} held"))
    assert await notifier.unmute() == 1
    assert await notifier.wait_idle(5)
    await notifier.stop()
    engine.dispose()
    assert transport.sent[:2] == [f"{name} crashed", f"{name} restarted"]
    assert any(f"{name} held" in text for text in transport.sent[2:])
