"""The outbox's tables and every query on them, for the delivery worker in ``bot.outbox``.

Rows move ``pending`` -> ``sent`` (or ``failed`` when Telegram refuses one for
good); while the chat is muted, non-critical rows wait as ``held`` and become
``summarised`` when the mute ends. Times are Unix epoch seconds. Portable
SQLAlchemy Core, so the control DB may be Postgres.

Each chat is its own line: an alert row has no ``chat_id`` (it goes to the
configured alert chat), a command's reply names its chat and forum thread.
Within a chat, rows go by ``priority`` then id, so a reply overtakes the
alerts waiting there (the user is waiting for it) and keeps its order among
replies. Columns added after the first release are added in place to an older
table (``_add_missing_columns``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from alembic.operations import Operations
from alembic.runtime.migration import MigrationContext

from bot.pacing import Batch, OutboxRow, encode_buttons, summary_text
from bot.text import Button, Message
from bot.transport import ChatTarget

PENDING, SENT, HELD, SUMMARISED, FAILED = "pending", "sent", "held", "summarised", "failed"
MUTE_KEY = "mute_until"
MERGE_CANDIDATES = 1000
REPLY, ALERT = 0, 1  # priorities: lower goes first within a chat


def _target_columns() -> list[sa.Column[Any]]:
    """Added with command replies: the chat a row goes to and its place in that chat's line."""
    return [
        sa.Column("chat_id", sa.BigInteger),  # None: the alert chat, whatever it is configured to
        sa.Column("thread_id", sa.BigInteger),
        sa.Column("priority", sa.Integer, nullable=False, server_default=str(ALERT)),
    ]


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
    *_target_columns(),
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
    target = None if record.chat_id is None else ChatTarget(record.chat_id, record.thread_id)
    return OutboxRow(
        record.id,
        record.key,
        record.text,
        record.buttons,
        record.loud,
        record.mergeable,
        target=target,
        urgent=record.priority == REPLY,
        due_at=record.next_attempt_at,
    )


def _add_missing_columns(conn: sa.Connection) -> None:
    """Bring a ``bot_outbox`` made by an older release up to today's columns."""
    present = {column["name"] for column in sa.inspect(conn).get_columns(outbox.name)}
    operations = Operations(MigrationContext.configure(conn))
    for column in _target_columns():
        if column.name not in present:
            operations.add_column(outbox.name, column)


class OutboxStore:
    """The outbox rows, the incident -> message map and the mute, in one database."""

    def __init__(self, engine: sa.Engine, gather_seconds: float) -> None:
        self._engine = engine
        self._gather_seconds = gather_seconds
        self._tables_ready = False

    def ensure_tables(self) -> None:
        if not self._tables_ready:
            with self._engine.begin() as conn:
                metadata.create_all(conn)
                _add_missing_columns(conn)
            self._tables_ready = True

    def save(self, alert: Alert) -> None:
        """Commit one alert (see ``_save``)."""
        self.save_all([alert])

    def save_all(
        self, alerts: Sequence[Alert], also: Callable[[sa.Connection], None] | None = None
    ) -> None:
        """Commit ``alerts``, and what ``also`` writes (an event cursor), in one transaction."""
        self.ensure_tables()
        now = time.time()
        with self._engine.begin() as conn:
            for alert in alerts:
                self._save(conn, alert, now)
            if also is not None:
                also(conn)

    def save_reply(self, target: ChatTarget, messages: Sequence[Message]) -> list[int]:
        """Commit a command's reply, one row per message in one transaction; returns their ids.

        A reply is never held by a mute, merged or edited later, and goes before
        the alerts waiting for the same chat.
        """
        self.ensure_tables()
        now = time.time()
        rows = [
            self._new_row(Alert(m.text, m.buttons, mergeable=False), PENDING, now)
            | {"chat_id": target.chat_id, "thread_id": target.thread_id, "priority": REPLY}
            for m in messages
        ]
        insert = sa.insert(outbox).returning(outbox.c.id)
        with self._engine.begin() as conn:
            return [conn.execute(insert.values(**row)).scalar_one() for row in rows]

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

    def heads(self) -> list[OutboxRow]:
        """The first pending row of each chat's line, most urgent first, due or not.

        First in, first out within a chat: a row backing off holds up the rows
        behind it (a failure is the chat's, not the row's), so messages arrive
        in order, across restarts too; another chat's line is not held up.
        """
        pending = outbox.c.status == PENDING
        with self._engine.connect() as conn:
            chats = conn.execute(sa.select(outbox.c.chat_id).where(pending).distinct()).scalars()
            heads = [
                _row(
                    conn.execute(
                        sa.select(outbox)
                        .where(pending, _in_chat(chat))
                        .order_by(outbox.c.priority, outbox.c.id)
                        .limit(1)
                    ).one()
                )
                for chat in list(chats)
            ]
        return sorted(heads, key=lambda head: (not head.urgent, head.id))

    def riders(self, head: OutboxRow, now: float) -> list[OutboxRow]:
        """``head`` and the mergeable rows of its chat that may ride along in one message."""
        if not head.merges:
            return [head]
        chat = head.target.chat_id if head.target is not None else None
        # Rows still being gathered ride along with the head instead of trailing it.
        with self._engine.connect() as conn:
            others = conn.execute(
                sa.select(outbox)
                .where(
                    outbox.c.status == PENDING,
                    _in_chat(chat),
                    outbox.c.next_attempt_at <= now + self._gather_seconds,
                    outbox.c.mergeable,
                    outbox.c.key.is_(None),
                    outbox.c.id != head.id,
                )
                .order_by(outbox.c.id)
                .limit(MERGE_CANDIDATES)
            ).all()
        return [head, *map(_row, others)]

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

    def _save(self, conn: sa.Connection, alert: Alert, now: float) -> None:
        """Pending, or held while muted; a keyed alert replaces its waiting twin."""
        held = not alert.critical and self._mute_until(conn) > now
        status = HELD if held else PENDING
        if alert.key is None or not self._replace(conn, alert, status):
            conn.execute(sa.insert(outbox).values(**self._new_row(alert, status, now)))

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


def _in_chat(chat_id: int | None) -> sa.ColumnElement[bool]:
    return outbox.c.chat_id.is_(None) if chat_id is None else outbox.c.chat_id == chat_id
