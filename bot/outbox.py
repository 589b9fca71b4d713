"""The bot's alert outbox: every alert is a database row before it is a message.

``enqueue`` commits the alert to ``bot_outbox`` before it returns, so a crash,
a restart or a Telegram outage loses nothing. One worker task delivers the
rows in order, paced for Telegram's limits (``bot.pacing``), retrying network
errors forever, coalescing bursts into few messages, editing one message per
incident key, and holding non-critical alerts while the chat is muted.

Exactly once, with one small window: a row is marked sent in the transaction
that records its message id, right after Telegram accepts it, and a sent row
is never sent again. A crash between Telegram's reply and that commit sends
the message once more after a restart, and so does a request that timed out
after Telegram processed it: a rare duplicate, never a loss.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from bot.pacing import (
    Batch,
    OutboxRow,
    Pacer,
    Pacing,
    backoff,
    compose,
    encode_buttons,
    first_line,
    fit_batch,
    summary_text,
)
from bot.text import Button
from bot.transport import (
    ChatTarget,
    ChatTransport,
    MessageGone,
    RetryLater,
    TransientError,
    Undeliverable,
)

__all__ = ["Alert", "Notifier", "Pacing"]

log = logging.getLogger(__name__)

PENDING, SENT, HELD, SUMMARISED, FAILED = "pending", "sent", "held", "summarised", "failed"
MUTE_KEY = "mute_until"
MERGE_CANDIDATES = 1000
WORKER_RETRY_SECONDS = 1.0
IDLE_POLL_SECONDS = 0.01
KEEP_DELIVERED_SECONDS = 30 * 86400  # delivered rows are history; pending ones are kept forever
DEFAULT_PACING = Pacing()

metadata = sa.MetaData()
outbox = sa.Table(
    "bot_outbox",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("created_at", sa.Float, nullable=False),  # times are Unix epoch seconds
    sa.Column("key", sa.String(255), index=True),
    sa.Column("text", sa.Text, nullable=False),
    sa.Column("buttons", sa.Text, nullable=False),  # JSON: [[label, data], ...]
    sa.Column("loud", sa.Boolean, nullable=False),
    sa.Column("critical", sa.Boolean, nullable=False),
    sa.Column("mergeable", sa.Boolean, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("next_attempt_at", sa.Float, nullable=False),
    sa.Column("last_error", sa.Text),
    sa.Column("sent_at", sa.Float),
    sa.Column("message_id", sa.BigInteger),
    sa.Index("ix_bot_outbox_due", "status", "next_attempt_at"),
)
alert_messages = sa.Table(
    "bot_alert_messages",
    metadata,
    sa.Column("key", sa.String(255), primary_key=True),
    sa.Column("message_id", sa.BigInteger, nullable=False),
    sa.Column("chat_id", sa.BigInteger, nullable=False),
)
kv = sa.Table(
    "bot_kv",
    metadata,
    sa.Column("key", sa.String(255), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)


@dataclass(frozen=True, slots=True)
class Alert:
    text: str  # Telegram HTML, already escaped, <= 4096 chars
    buttons: tuple[Button, ...] = ()
    key: str | None = None  # incident key: later alerts with the same key EDIT the first's message
    loud: bool = True  # False -> disable_notification
    critical: bool = False  # delivered even while muted (hangs, give-ups)
    mergeable: bool = True  # may be coalesced with other pending alerts into one message


def _row(record: Any) -> OutboxRow:
    return OutboxRow(
        record.id, record.key, record.text, record.buttons, record.loud, record.mergeable
    )


class Notifier:
    """The durable outbox and its single delivery worker for one chat target."""

    def __init__(
        self,
        engine: sa.Engine,
        transport: ChatTransport,
        target: ChatTarget,
        *,
        pacing: Pacing = DEFAULT_PACING,
    ) -> None:
        self._engine = engine
        self._transport = transport
        self._target = target
        self._pacing = pacing
        self._pacer = Pacer(pacing)
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._failure_streak = 0  # consecutive failed deliveries, for the backoff
        self._unsaved: deque[Alert] = deque()  # refused by the DB; saved by the worker
        self._unrecorded: tuple[Batch, int] | None = None
        self._tables_ready = False

    # -- public API ------------------------------------------------------------------------

    async def start(self) -> None:
        """Create the tables if needed and start the worker; old pending rows go out too."""
        self._ensure_tables()
        self._forget_delivered(older_than=time.time() - KEEP_DELIVERED_SECONDS)
        if self._task is None or self._task.done():
            self._loop = asyncio.get_running_loop()
            self._stopping = False
            self._task = asyncio.create_task(self._run(), name="alert-outbox")

    async def stop(self, flush_timeout: float = 5.0) -> None:
        """Deliver what is due within ``flush_timeout``, then stop; the rest stays pending."""
        if self._task is None:
            return
        try:
            await self.wait_idle(flush_timeout)
        finally:
            self._stopping = True
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def enqueue(self, alert: Alert) -> None:
        """Commit ``alert`` to the outbox (before returning) and wake the worker.

        If the control DB refuses the write (locked for longer than its busy
        timeout, disk full), the alert waits in memory and the worker writes
        it as soon as the DB takes writes again: late, but not lost.
        """
        try:
            self._save(alert)
        except sa.exc.SQLAlchemyError as exc:
            self._unsaved.append(alert)
            log.error("alert outbox: control DB refused an alert (%s); keeping it in memory", exc)
        self._wake_worker()

    def _save(self, alert: Alert) -> None:
        self._ensure_tables()
        now = time.time()
        with self._engine.begin() as conn:
            held = not alert.critical and self._mute_until(conn) > now
            status = HELD if held else PENDING
            if alert.key is None or not self._replace(conn, alert, status):
                conn.execute(sa.insert(outbox).values(**self._new_row(alert, status, now)))

    def _save_unsaved(self) -> None:
        """Write alerts the DB refused earlier, oldest first; stops at the first refusal."""
        while self._unsaved:
            self._save(self._unsaved[0])
            self._unsaved.popleft()

    def mute(self, until: datetime) -> None:
        """Hold non-critical alerts until ``until`` (naive means local time); persisted."""
        self._ensure_tables()
        with self._engine.begin() as conn:
            conn.execute(sa.delete(kv).where(kv.c.key == MUTE_KEY))
            value = until.astimezone(UTC).isoformat()
            conn.execute(sa.insert(kv).values(key=MUTE_KEY, value=value))
        self._wake_worker()

    def unmute(self) -> int:
        """End the mute; returns how many held alerts the enqueued summary covers."""
        self._ensure_tables()
        with self._engine.begin() as conn:
            conn.execute(sa.delete(kv).where(kv.c.key == MUTE_KEY))
            count = self._summarise(conn)
        self._wake_worker()
        return count

    @property
    def muted_until(self) -> datetime | None:
        self._ensure_tables()
        with self._engine.connect() as conn:
            until = self._mute_until(conn)
        return datetime.fromtimestamp(until, UTC) if until > time.time() else None

    async def wait_idle(self, timeout: float) -> bool:  # noqa: ASYNC109 - part of the interface
        """True once nothing is pending (held rows don't count); False after ``timeout``."""
        deadline = time.monotonic() + timeout
        while not self._idle():
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(IDLE_POLL_SECONDS)
        return True

    # -- database --------------------------------------------------------------------------

    def _forget_delivered(self, older_than: float) -> None:
        with self._engine.begin() as conn:
            conn.execute(
                sa.delete(outbox).where(
                    outbox.c.status.in_((SENT, SUMMARISED, FAILED)),
                    outbox.c.created_at < older_than,
                )
            )

    def _ensure_tables(self) -> None:
        if not self._tables_ready:
            metadata.create_all(self._engine)
            self._tables_ready = True

    def _new_row(self, alert: Alert, status: str, now: float) -> dict[str, Any]:
        gather = self._pacing.gather_seconds if alert.mergeable and alert.key is None else 0.0
        return {
            "created_at": now,
            "key": alert.key,
            "text": alert.text,
            "buttons": encode_buttons(alert.buttons),
            "loud": alert.loud,
            "critical": alert.critical,
            "mergeable": alert.mergeable,
            "status": status,
            "attempts": 0,
            "next_attempt_at": now + gather,
        }

    def _replace(self, conn: sa.Connection, alert: Alert, status: str) -> bool:
        """Newer content for a waiting row with the same key; it keeps its place in line."""
        result = conn.execute(
            sa.update(outbox)
            .where(outbox.c.key == alert.key, outbox.c.status == status)
            .values(
                text=alert.text,
                buttons=encode_buttons(alert.buttons),
                loud=alert.loud,
                critical=alert.critical,
                mergeable=alert.mergeable,
            )
        )
        return result.rowcount > 0

    def _mute_until(self, conn: sa.Connection) -> float:
        """Epoch seconds the mute lasts until; 0 when there is none."""
        value = conn.execute(sa.select(kv.c.value).where(kv.c.key == MUTE_KEY)).scalar()
        return datetime.fromisoformat(value).timestamp() if value else 0.0

    def _summarise(self, conn: sa.Connection) -> int:
        """Turn every held row into one line of a single summary alert."""
        held = conn.execute(
            sa.select(outbox.c.id, outbox.c.text)
            .where(outbox.c.status == HELD)
            .order_by(outbox.c.id)
        ).all()
        if not held:
            return 0
        conn.execute(
            sa.update(outbox)
            .where(outbox.c.status == HELD, outbox.c.id <= held[-1].id)
            .values(status=SUMMARISED)
        )
        summary = Alert(summary_text([row.text for row in held]), mergeable=False)
        conn.execute(sa.insert(outbox).values(**self._new_row(summary, PENDING, time.time())))
        return len(held)

    def _idle(self) -> bool:
        if self._unrecorded is not None or self._unsaved:
            return False
        with self._engine.connect() as conn:
            pending = conn.execute(
                sa.select(outbox.c.id).where(outbox.c.status == PENDING).limit(1)
            ).first()
        return pending is None

    def _set(self, rows: Sequence[OutboxRow], **values: Any) -> None:
        ids = [row.id for row in rows]
        with self._engine.begin() as conn:
            conn.execute(sa.update(outbox).where(outbox.c.id.in_(ids)).values(**values))

    # -- worker ----------------------------------------------------------------------------

    def _wake_worker(self) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._wake.set()
        else:
            loop.call_soon_threadsafe(self._wake.set)

    async def _run(self) -> None:
        while not self._stopping:
            self._wake.clear()
            try:
                delay = await self._step()
            except Exception:
                log.exception("alert outbox: worker step failed; retrying")
                delay = WORKER_RETRY_SECONDS
            if delay is not None and delay <= 0:
                await asyncio.sleep(0)
                continue
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow the cancel of stop()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._wake.wait()

    async def _step(self) -> float | None:
        """Do one unit of work; returns seconds until there may be more (None: until woken)."""
        if self._unrecorded is not None:
            self._record(*self._unrecorded)
        self._save_unsaved()
        mute_left = self._expire_mute()
        rows, due_in = self._due_rows()
        if not rows:
            waits = [w for w in (due_in, mute_left) if w is not None]
            return min(waits) if waits else None
        ready_in = self._pacer.ready_in(self._target)
        if ready_in > 0:
            return ready_in
        await self._deliver(compose(rows))
        return 0.0

    def _expire_mute(self) -> float | None:
        """Summarise held rows once the mute has run out; returns seconds it has left."""
        now = time.time()
        with self._engine.begin() as conn:
            until = self._mute_until(conn)
            if not until:
                return None
            if until > now:
                return until - now
            conn.execute(sa.delete(kv).where(kv.c.key == MUTE_KEY))
            count = self._summarise(conn)
        log.info("alert outbox: mute expired, %d held alerts summarised", count)
        return None

    def _due_rows(self) -> tuple[list[OutboxRow], float | None]:
        """The head of the line with the mergeable rows that fit beside it, or the wait for it.

        Strictly first in, first out: a row backing off holds up the rows behind
        it (a failure is the chat's, not the row's), so alerts arrive in order,
        across restarts too.
        """
        now = time.time()
        pending = sa.select(outbox).where(outbox.c.status == PENDING).order_by(outbox.c.id)
        with self._engine.connect() as conn:
            first = conn.execute(pending.limit(1)).first()
            if first is None:
                return [], None
            if first.next_attempt_at > now:
                return [], first.next_attempt_at - now
            head = _row(first)
            if not head.merges:
                return [head], None
            # Rows still being gathered ride along with the head instead of trailing it.
            others = conn.execute(
                pending.where(
                    outbox.c.next_attempt_at <= now + self._pacing.gather_seconds,
                    outbox.c.mergeable,
                    outbox.c.key.is_(None),
                    outbox.c.id != head.id,
                ).limit(MERGE_CANDIDATES)
            ).all()
        return fit_batch([head, *map(_row, others)]), None

    async def _deliver(self, batch: Batch) -> None:
        self._pacer.record(self._target)
        try:
            message_id = await self._send(batch)
        except RetryLater as exc:
            self._pacer.hold(self._target, exc.seconds)
            log.warning("alert outbox: Telegram asked to wait %.1fs", exc.seconds)
            self._set(batch.rows, next_attempt_at=time.time() + exc.seconds, last_error=str(exc))
        except Undeliverable as exc:
            self._give_up(batch, exc)
        except Exception as exc:
            self._retry(batch, exc)
        else:
            self._failure_streak = 0
            self._unrecorded = (batch, message_id)
            self._record(batch, message_id)

    async def _send(self, batch: Batch) -> int:
        """Edit the incident's message if it has one, else send a new message."""
        known = self._message_for(batch.key) if batch.key is not None else None
        if known is not None:
            try:
                await self._transport.edit(self._target, known, batch.message)
            except MessageGone:
                log.info("alert outbox: message for %r is gone; sending a new one", batch.key)
            else:
                return known
        return await self._transport.send(self._target, batch.message, silent=batch.silent)

    def _message_for(self, key: str) -> int | None:
        with self._engine.connect() as conn:
            found = conn.execute(
                sa.select(alert_messages.c.message_id, alert_messages.c.chat_id).where(
                    alert_messages.c.key == key
                )
            ).first()
        if found is None or found.chat_id != self._target.chat_id:
            return None
        return int(found.message_id)

    def _record(self, batch: Batch, message_id: int) -> None:
        """Mark the rows sent and remember the incident's message, in one transaction.

        A row whose text was replaced while in flight stays pending: its next
        delivery edits the message recorded here.
        """
        with self._engine.begin() as conn:
            for row in batch.rows:
                conn.execute(
                    sa.update(outbox)
                    .where(
                        outbox.c.id == row.id,
                        outbox.c.status == PENDING,
                        outbox.c.text == row.text,
                        outbox.c.buttons == row.buttons,
                    )
                    .values(status=SENT, sent_at=time.time(), message_id=message_id)
                )
            if batch.key is not None:
                conn.execute(sa.delete(alert_messages).where(alert_messages.c.key == batch.key))
                conn.execute(
                    sa.insert(alert_messages).values(
                        key=batch.key, message_id=message_id, chat_id=self._target.chat_id
                    )
                )
        self._unrecorded = None

    def _retry(self, batch: Batch, exc: Exception) -> None:
        """Back off exponentially; an alert is never dropped for a transient failure.

        The wait grows with the chat's run of failures, not the row's: a lone
        failure (one lost request among many) is retried at the normal pace,
        and a real outage backs off 1, 2, 4 ... seconds.
        """
        if not isinstance(exc, TransientError):
            log.error("alert outbox: unexpected delivery error", exc_info=exc)
        self._failure_streak += 1
        streak = self._failure_streak
        delay = 0.0 if streak == 1 else backoff(self._pacing, streak - 1)
        with self._engine.begin() as conn:
            for row in batch.rows:
                attempts = (
                    1
                    + conn.execute(
                        sa.select(outbox.c.attempts).where(outbox.c.id == row.id)
                    ).scalar_one()
                )
                conn.execute(
                    sa.update(outbox)
                    .where(outbox.c.id == row.id)
                    .values(
                        attempts=attempts,
                        next_attempt_at=time.time() + delay,
                        last_error=str(exc) or type(exc).__name__,
                    )
                )
        log.warning("alert outbox: delivery failed (%s); retrying with backoff", exc)

    def _give_up(self, batch: Batch, exc: Undeliverable) -> None:
        """A merged message Telegram refuses is split up; a single refused alert fails."""
        if len(batch.rows) > 1:
            log.warning("alert outbox: merged message refused (%s); sending one by one", exc)
            self._set(batch.rows, mergeable=False)
            return
        self._set(batch.rows, status=FAILED, attempts=outbox.c.attempts + 1, last_error=str(exc))
        log.error(
            "alert outbox: giving up on an undeliverable alert (%s): %s",
            exc,
            first_line(batch.rows[0].text),
        )
