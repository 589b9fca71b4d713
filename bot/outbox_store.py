"""The outbox's rows and the queries that save and deliver them, for the worker in ``bot.outbox``.

Rows move ``pending`` -> ``sent`` (or ``failed`` when Telegram refuses one for
good); the schema and the statuses are in ``bot.outbox_tables``. The store
owns the engine and every transaction: holding and summarising alerts while
muted (``bot.mutes``) and repeating give-ups (``bot.reminders``) are rules of
their own that work in its transactions, so a saved alert is checked against
the mutes, and its reminders started or ended, in the transaction that
inserts its row. Times are Unix epoch seconds from the injected clock.

Each chat is its own line: an alert row has no ``chat_id`` (it goes to the
configured alert chat), a command's reply names its chat and forum thread.
Within a chat, rows go by ``priority`` then id, so a reply overtakes the
alerts waiting there (the user is waiting for it) and keeps its order among
replies.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, tzinfo
from typing import Any

import sqlalchemy as sa

from bot.mutes import Mutes, end_expired, end_mutes, mutes_in_force, set_mute, summarise_held
from bot.outbox_tables import (
    ACKNOWLEDGED,
    FAILED,
    HELD,
    PENDING,
    REPLY,
    SENT,
    SUMMARISED,
    Alert,
    add_missing_columns,
    alert_messages,
    metadata,
    new_row,
    outbox,
)
from bot.pacing import Batch, OutboxRow, encode_buttons
from bot.reminders import end_reminders, queue_due_reminders, start_reminding
from bot.text import Message
from bot.transport import ChatTarget
from supervisor.dbengine import create_tables

MERGE_CANDIDATES = 1000


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
        workflow=record.workflow,
        happened_at=record.happened_at,
    )


@dataclass(frozen=True, slots=True)
class MessageOrigin:
    """The outbox row a chat message came from: a reply's key, an alert's workflow."""

    key: str | None
    workflow: str | None


class OutboxStore:
    """The outbox rows and the incident -> message map; the mutes and reminders go through it."""

    def __init__(
        self,
        engine: sa.Engine,
        gather_seconds: float,
        *,
        clock: Callable[[], float] = time.time,
        timezone: tzinfo = UTC,
    ) -> None:
        self._engine = engine
        self._gather_seconds = gather_seconds
        self._clock = clock
        self._tz = timezone
        self._tables_ready = False

    def ensure_tables(self) -> None:
        if not self._tables_ready:
            with self._engine.begin() as conn:
                create_tables(conn, metadata)
                add_missing_columns(conn)
            self._tables_ready = True

    def save(self, alert: Alert) -> None:
        """Commit one alert (see ``_save``)."""
        self.save_all([alert])

    def save_all(
        self, alerts: Sequence[Alert], also: Callable[[sa.Connection], None] | None = None
    ) -> None:
        """Commit ``alerts``, and what ``also`` writes (an event cursor), in one transaction."""
        self.ensure_tables()
        now = self._clock()
        with self._engine.begin() as conn:
            for alert in alerts:
                self._save(conn, alert, now)
            if also is not None:
                also(conn)

    def save_reply(
        self, target: ChatTarget, messages: Sequence[Message], key: str | None = None
    ) -> list[int]:
        """Commit a command's reply, one row per message in one transaction; returns their ids.

        A reply is never held by a mute or merged, and goes before the alerts
        waiting for the same chat. With ``key`` its last message is keyed as an
        incident's is (``/tail NAME follow``): it replaces a still-waiting row
        with that key, whose id it returns, and once that row is sent, the
        next reply with the key edits its message.
        """
        self.ensure_tables()
        now = self._clock()
        rows = [
            new_row(Alert(m.text, m.buttons, mergeable=False), PENDING, now)
            | {"chat_id": target.chat_id, "thread_id": target.thread_id, "priority": REPLY}
            for m in messages
        ]
        if key is not None and rows:
            rows[-1]["key"] = key
        insert = sa.insert(outbox).returning(outbox.c.id)
        with self._engine.begin() as conn:
            waiting = self._replace_reply(conn, key, messages[-1]) if key and messages else None
            fresh = rows if waiting is None else rows[:-1]
            ids = [conn.execute(insert.values(**row)).scalar_one() for row in fresh]
            return ids if waiting is None else [*ids, waiting]

    def _replace_reply(self, conn: sa.Connection, key: str, message: Message) -> int | None:
        """The still-waiting reply row with ``key``, now showing ``message``; None if none waits."""
        waiting: int | None = conn.execute(
            sa.select(outbox.c.id).where(outbox.c.key == key, outbox.c.status == PENDING)
        ).scalar()
        if waiting is not None:
            conn.execute(
                sa.update(outbox)
                .where(outbox.c.id == waiting)
                .values(text=message.text, buttons=encode_buttons(message.buttons))
            )
        return waiting

    def forget_delivered(self, older_than: float) -> None:
        self.ensure_tables()
        with self._engine.begin() as conn:
            conn.execute(
                sa.delete(outbox).where(
                    outbox.c.status.in_((SENT, SUMMARISED, FAILED, ACKNOWLEDGED)),
                    outbox.c.created_at < older_than,
                )
            )

    # -- mutes and reminders (bot.mutes, bot.reminders), each in a transaction of its own --

    def mute(self, until: datetime, workflow: str | None = None) -> None:
        """Hold ordinary alerts (of ``workflow`` only, if given) until ``until``."""
        self.ensure_tables()
        with self._engine.begin() as conn:
            set_mute(conn, until, workflow)

    def unmute(self, workflow: str | None = None) -> int:
        """End ``workflow``'s mute, or every mute; returns how many items the summary lists."""
        self.ensure_tables()
        with self._engine.begin() as conn:
            end_mutes(conn, workflow)
            return summarise_held(conn, self._clock(), self._tz)

    def mutes(self) -> Mutes:
        """The mutes that have not run out."""
        self.ensure_tables()
        with self._engine.connect() as conn:
            return mutes_in_force(conn, self._clock())

    def expire_mute(self, now: float) -> tuple[float | None, int | None]:
        """End mutes that have run out: (seconds until the next ends, or None; items summarised)."""
        with self._engine.begin() as conn:
            left, expired = end_expired(conn, now)
            summarised = summarise_held(conn, self._clock(), self._tz) if expired else None
            return left, summarised

    def acknowledge(self, workflow: str) -> int:
        """Stop reminding of ``workflow``'s alerts; returns how many reminders stopped."""
        self.ensure_tables()
        with self._engine.begin() as conn:
            return end_reminders(conn, workflow)

    def remind(self, now: float) -> float | None:
        """Queue the reminders due (``bot.reminders``); returns seconds until the next is due."""
        with self._engine.begin() as conn:
            return queue_due_reminders(conn, now, self._tz)

    # -- delivery --------------------------------------------------------------------------

    def has_pending(self) -> bool:
        with self._engine.connect() as conn:
            pending = conn.execute(
                sa.select(outbox.c.id).where(outbox.c.status == PENDING).limit(1)
            ).first()
        return pending is not None

    def count_pending(self) -> int:
        """How many rows wait to be sent, held ones not counted (``acp_alerts_pending``)."""
        with self._engine.connect() as conn:
            count = conn.execute(
                sa.select(sa.func.count()).select_from(outbox).where(outbox.c.status == PENDING)
            ).scalar_one()
        return int(count)

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

    def origin(self, chat_id: int, message_id: int, alert_chat: bool) -> MessageOrigin | None:
        """What the message ``message_id`` in ``chat_id`` was sent as: its key and workflow.

        ``alert_chat``: the chat is the configured alert chat, whose rows may name no chat.
        """
        self.ensure_tables()
        chats = _in_chat(chat_id)
        if alert_chat:
            chats = sa.or_(chats, outbox.c.chat_id.is_(None))
        with self._engine.connect() as conn:
            found = conn.execute(
                sa.select(outbox.c.key, outbox.c.workflow)
                .where(outbox.c.message_id == message_id, chats)
                .order_by(outbox.c.id.desc())
                .limit(1)
            ).first()
        return None if found is None else MessageOrigin(found.key, found.workflow)

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
                    .values(status=SENT, sent_at=self._clock(), message_id=message_id)
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
                    next_attempt_at=self._clock() + delay,
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
        """Pending, or held while muted; a keyed alert replaces its waiting twin.

        Held alerts are not replaced but kept, one row each, so the summary
        knows when an incident began as well as how it ended.
        """
        if alert.happened_at is None:  # an alert is about now unless it says otherwise
            alert = replace(alert, happened_at=now)
        if alert.ends_reminders and alert.workflow is not None:
            end_reminders(conn, alert.workflow)
        held = not alert.critical and mutes_in_force(conn, now).hold(alert.workflow)
        status = HELD if held else PENDING
        if held or alert.key is None or not self._replace(conn, alert):
            row = new_row(alert, status, now, self._gather_seconds)
            conn.execute(sa.insert(outbox).values(**row))
        start_reminding(conn, alert, now)

    def _replace(self, conn: sa.Connection, alert: Alert) -> bool:
        """Newer content for a pending row with the same key; it keeps its place in line.

        Everything about the message is the new alert's, its sound included:
        what it replaced does not make it louder or quieter.
        """
        result = conn.execute(
            sa.update(outbox)
            .where(outbox.c.key == alert.key, outbox.c.status == PENDING)
            .values(
                text=alert.text,
                buttons=encode_buttons(alert.buttons),
                loud=alert.loud,
                critical=alert.critical,
                mergeable=alert.mergeable,
                workflow=alert.workflow,
                happened_at=alert.happened_at,
            )
        )
        return result.rowcount > 0


def _in_chat(chat_id: int | None) -> sa.ColumnElement[bool]:
    return outbox.c.chat_id.is_(None) if chat_id is None else outbox.c.chat_id == chat_id
