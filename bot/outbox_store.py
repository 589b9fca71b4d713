"""The outbox's tables and every query on them, for the delivery worker in ``bot.outbox``.

Rows move ``pending`` -> ``sent`` (or ``failed`` when Telegram refuses one for
good); while the chat is muted, non-critical rows wait as ``held`` and become
``summarised`` when the mute ends. Times are Unix epoch seconds. Portable
SQLAlchemy Core, so the control DB may be Postgres.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from bot.pacing import Batch, OutboxRow, encode_buttons, summary_text
from bot.text import Button

PENDING, SENT, HELD, SUMMARISED, FAILED = "pending", "sent", "held", "summarised", "failed"
MUTE_KEY = "mute_until"
MERGE_CANDIDATES = 1000

metadata = sa.MetaData()
outbox = sa.Table(
    "bot_outbox",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("created_at", sa.Float, nullable=False),
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


class OutboxStore:
    """The outbox rows, the incident -> message map and the mute, in one database."""

    def __init__(self, engine: sa.Engine, gather_seconds: float) -> None:
        self._engine = engine
        self._gather_seconds = gather_seconds
        self._tables_ready = False

    def ensure_tables(self) -> None:
        if not self._tables_ready:
            metadata.create_all(self._engine)
            self._tables_ready = True

    def save(self, alert: Alert) -> None:
        """Commit one alert: pending, or held while muted; a keyed one replaces its waiting twin."""
        self.ensure_tables()
        now = time.time()
        with self._engine.begin() as conn:
            held = not alert.critical and self._mute_until(conn) > now
            status = HELD if held else PENDING
            if alert.key is None or not self._replace(conn, alert, status):
                conn.execute(sa.insert(outbox).values(**self._new_row(alert, status, now)))

    def forget_delivered(self, older_than: float) -> None:
        self.ensure_tables()
        with self._engine.begin() as conn:
            conn.execute(
                sa.delete(outbox).where(
                    outbox.c.status.in_((SENT, SUMMARISED, FAILED)),
                    outbox.c.created_at < older_than,
                )
            )

    # -- mute ------------------------------------------------------------------------------

    def mute(self, until: datetime) -> None:
        self.ensure_tables()
        with self._engine.begin() as conn:
            conn.execute(sa.delete(kv).where(kv.c.key == MUTE_KEY))
            value = until.astimezone(UTC).isoformat()
            conn.execute(sa.insert(kv).values(key=MUTE_KEY, value=value))

    def unmute(self) -> int:
        """End the mute now; returns how many held alerts the enqueued summary covers."""
        self.ensure_tables()
        with self._engine.begin() as conn:
            conn.execute(sa.delete(kv).where(kv.c.key == MUTE_KEY))
            return self._summarise(conn)

    def muted_until(self) -> float:
        """Epoch seconds the mute lasts until; 0 when there is none."""
        self.ensure_tables()
        with self._engine.connect() as conn:
            return self._mute_until(conn)

    def expire_mute(self, now: float) -> tuple[float | None, int | None]:
        """End a mute that has run out: (seconds it still has, or None; alerts summarised)."""
        with self._engine.begin() as conn:
            until = self._mute_until(conn)
            if not until:
                return None, None
            if until > now:
                return until - now, None
            conn.execute(sa.delete(kv).where(kv.c.key == MUTE_KEY))
            return None, self._summarise(conn)

    # -- delivery --------------------------------------------------------------------------

    def has_pending(self) -> bool:
        with self._engine.connect() as conn:
            pending = conn.execute(
                sa.select(outbox.c.id).where(outbox.c.status == PENDING).limit(1)
            ).first()
        return pending is not None

    def due_rows(self, now: float) -> tuple[list[OutboxRow], float | None]:
        """The head of the line with the mergeable rows that may ride along, or the wait for it.

        Strictly first in, first out: a row backing off holds up the rows behind
        it (a failure is the chat's, not the row's), so alerts arrive in order,
        across restarts too.
        """
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
                    outbox.c.next_attempt_at <= now + self._gather_seconds,
                    outbox.c.mergeable,
                    outbox.c.key.is_(None),
                    outbox.c.id != head.id,
                ).limit(MERGE_CANDIDATES)
            ).all()
        return [head, *map(_row, others)], None

    def message_for(self, key: str, chat_id: int) -> int | None:
        """The message that shows incident ``key`` in ``chat_id``, if one was sent."""
        with self._engine.connect() as conn:
            found = conn.execute(
                sa.select(alert_messages.c.message_id, alert_messages.c.chat_id).where(
                    alert_messages.c.key == key
                )
            ).first()
        if found is None or found.chat_id != chat_id:
            return None
        return int(found.message_id)

    def record(self, batch: Batch, message_id: int, chat_id: int) -> None:
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
                        key=batch.key, message_id=message_id, chat_id=chat_id
                    )
                )

    def retry_later(self, rows: Sequence[OutboxRow], delay: float, error: str) -> None:
        """Count a failed attempt and put the rows back in line after ``delay`` seconds."""
        with self._engine.begin() as conn:
            conn.execute(
                sa.update(outbox)
                .where(outbox.c.id.in_([row.id for row in rows]))
                .values(
                    attempts=outbox.c.attempts + 1,
                    next_attempt_at=time.time() + delay,
                    last_error=error,
                )
            )

    def fail(self, rows: Sequence[OutboxRow], error: str) -> None:
        """Give the rows up for good (Telegram refuses them); they stay, for the record."""
        self.set(rows, status=FAILED, attempts=outbox.c.attempts + 1, last_error=error)

    def set(self, rows: Sequence[OutboxRow], **values: Any) -> None:
        ids = [row.id for row in rows]
        with self._engine.begin() as conn:
            conn.execute(sa.update(outbox).where(outbox.c.id.in_(ids)).values(**values))

    # -- rows ------------------------------------------------------------------------------

    def _new_row(self, alert: Alert, status: str, now: float) -> dict[str, Any]:
        gather = self._gather_seconds if alert.mergeable and alert.key is None else 0.0
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
