"""The outbox's tables and every query on them, for the delivery worker in ``bot.outbox``.

Rows move ``pending`` -> ``sent`` (or ``failed`` when Telegram refuses one for
good); while the chat, or the alert's workflow, is muted, non-critical rows
wait as ``held`` and become ``summarised`` when no mute holds them any more.
An alert to be repeated until acknowledged leaves a ``reminding`` row that
queues a loud reminder every period until ``acknowledge`` (or an alert that
``ends_reminders``) makes it ``acknowledged``. Times are Unix epoch seconds
from the injected clock. Portable SQLAlchemy Core, so the control DB may be
Postgres.

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
from dataclasses import dataclass, replace
from datetime import UTC, datetime, tzinfo
from typing import Any

import sqlalchemy as sa
from alembic.operations import Operations
from alembic.runtime.migration import MigrationContext

from bot.notices import Held, held_incidents, reminder_text
from bot.pacing import Batch, OutboxRow, decode_buttons, encode_buttons, summary_text
from bot.text import Button, Message
from bot.transport import ChatTarget

PENDING, SENT, HELD, SUMMARISED, FAILED = "pending", "sent", "held", "summarised", "failed"
REMINDING, ACKNOWLEDGED = "reminding", "acknowledged"  # a reminder's row, not a message's
MUTE_KEY = "mute_until"  # everything; a workflow's mute is MUTE_KEY:NAME
MERGE_CANDIDATES = 1000
REPLY, ALERT = 0, 1  # priorities: lower goes first within a chat


def _target_columns() -> list[sa.Column[Any]]:
    """Added with command replies: the chat a row goes to and its place in that chat's line."""
    return [
        sa.Column("chat_id", sa.BigInteger),  # None: the alert chat, whatever it is configured to
        sa.Column("thread_id", sa.BigInteger),
        sa.Column("priority", sa.Integer, nullable=False, server_default=str(ALERT)),
    ]


def _alert_columns() -> list[sa.Column[Any]]:
    """Added with issue 8: whose alert, when its event happened, how often to remind of it."""
    return [
        sa.Column("workflow", sa.String(255)),
        sa.Column("happened_at", sa.Float),
        sa.Column("remind_after", sa.Float),
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
    *_alert_columns(),
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
    # Fields below are for issue 8's delivery rules (per-workflow mute, late-delivery note,
    # reminders); the outbox stores and applies them.
    workflow: str | None = None  # whose alert: a mute of that workflow holds it
    happened_at: float | None = None  # epoch seconds of its event: late delivery says when
    remind_after: float | None = None  # seconds: repeat loudly until acknowledged (give-ups)
    ends_reminders: bool = False  # the workflow's reminders stop (it was started or stopped)


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


def _add_missing_columns(conn: sa.Connection) -> None:
    """Bring a ``bot_outbox`` made by an older release up to today's columns."""
    present = {column["name"] for column in sa.inspect(conn).get_columns(outbox.name)}
    operations = Operations(MigrationContext.configure(conn))
    for column in [*_target_columns(), *_alert_columns()]:
        if column.name not in present:
            operations.add_column(outbox.name, column)


def _mute_key(workflow: str | None) -> str:
    return MUTE_KEY if workflow is None else f"{MUTE_KEY}:{workflow}"


@dataclass(frozen=True, slots=True)
class Mutes:
    """The mutes in force at one moment: of everything, and of single workflows (epoch ends)."""

    everything: float | None
    workflows: dict[str, float]

    def hold(self, workflow: str | None) -> bool:
        """Whether an ordinary (non-critical) alert of ``workflow`` waits."""
        return self.everything is not None or (workflow is not None and workflow in self.workflows)

    def until(self, workflow: str | None) -> float | None:
        """When alerts of ``workflow`` (None: of no workflow) flow again; None if they do."""
        ends = [self.everything, None if workflow is None else self.workflows.get(workflow)]
        return max((end for end in ends if end is not None), default=None)


class OutboxStore:
    """The outbox rows, the incident -> message map, the mutes and reminders, in one database."""

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
            self._new_row(Alert(m.text, m.buttons, mergeable=False), PENDING, now)
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

    # -- mutes ----------------------------------------------------------------------------

    def mute(self, until: datetime, workflow: str | None = None) -> None:
        """Hold ordinary alerts (of ``workflow`` only, if given) until ``until``."""
        self.ensure_tables()
        key = _mute_key(workflow)
        with self._engine.begin() as conn:
            conn.execute(sa.delete(kv).where(kv.c.key == key))
            conn.execute(sa.insert(kv).values(key=key, value=until.astimezone(UTC).isoformat()))

    def unmute(self, workflow: str | None = None) -> int:
        """End ``workflow``'s mute, or every mute; returns how many items the summary lists."""
        self.ensure_tables()
        with self._engine.begin() as conn:
            ending = [_mute_key(workflow)] if workflow is not None else self._mute_ends(conn)
            conn.execute(sa.delete(kv).where(kv.c.key.in_(ending)))
            return self._summarise(conn)

    def mutes(self) -> Mutes:
        """The mutes that have not run out."""
        self.ensure_tables()
        with self._engine.connect() as conn:
            return self._mutes(conn, self._clock())

    def expire_mute(self, now: float) -> tuple[float | None, int | None]:
        """End mutes that have run out: (seconds until the next ends, or None; items summarised)."""
        with self._engine.begin() as conn:
            ends = self._mute_ends(conn)
            expired = [key for key, end in ends.items() if end <= now]
            left = [end - now for end in ends.values() if end > now]
            summarised = None
            if expired:
                conn.execute(sa.delete(kv).where(kv.c.key.in_(expired)))
                summarised = self._summarise(conn)
            return min(left, default=None), summarised

    def _mute_ends(self, conn: sa.Connection) -> dict[str, float]:
        """Every stored mute (run out or not): its kv key and when it ends."""
        stored = conn.execute(
            sa.select(kv.c.key, kv.c.value).where(
                sa.or_(kv.c.key == MUTE_KEY, kv.c.key.startswith(MUTE_KEY + ":"))
            )
        ).all()
        return {key: datetime.fromisoformat(value).timestamp() for key, value in stored}

    def _mutes(self, conn: sa.Connection, now: float) -> Mutes:
        ends = {key: end for key, end in self._mute_ends(conn).items() if end > now}
        prefix = MUTE_KEY + ":"
        return Mutes(
            ends.get(MUTE_KEY),
            {key.removeprefix(prefix): end for key, end in ends.items() if key != MUTE_KEY},
        )

    # -- reminders -------------------------------------------------------------------------

    def acknowledge(self, workflow: str) -> int:
        """Stop reminding of ``workflow``'s alerts; returns how many reminders stopped."""
        self.ensure_tables()
        with self._engine.begin() as conn:
            return self._end_reminders(conn, workflow)

    def remind(self, now: float) -> float | None:
        """Queue a loud reminder for each one due; returns seconds until the next is due.

        After a pause longer than a period (the bot was down) one reminder goes
        out, not one per missed period, and the next comes a period later.
        """
        with self._engine.begin() as conn:
            due = conn.execute(
                sa.select(outbox).where(
                    outbox.c.status == REMINDING, outbox.c.next_attempt_at <= now
                )
            ).all()
            for row in due:
                text = reminder_text(row.text, row.happened_at, now, self._tz)
                reminder = Alert(
                    text,
                    decode_buttons(row.buttons),
                    critical=row.critical,
                    mergeable=False,
                    workflow=row.workflow,
                    happened_at=now,  # it is news now: no "happened at" note when sent
                )
                conn.execute(sa.insert(outbox).values(**self._new_row(reminder, PENDING, now)))
                conn.execute(
                    sa.update(outbox)
                    .where(outbox.c.id == row.id)
                    .values(next_attempt_at=now + row.remind_after)
                )
            following = conn.execute(
                sa.select(sa.func.min(outbox.c.next_attempt_at)).where(outbox.c.status == REMINDING)
            ).scalar()
        return None if following is None else following - now

    def _end_reminders(self, conn: sa.Connection, workflow: str) -> int:
        ended = conn.execute(
            sa.update(outbox)
            .where(outbox.c.status == REMINDING, outbox.c.workflow == workflow)
            .values(status=ACKNOWLEDGED)
        )
        return ended.rowcount

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
            self._end_reminders(conn, alert.workflow)
        held = not alert.critical and self._mutes(conn, now).hold(alert.workflow)
        status = HELD if held else PENDING
        if held or alert.key is None or not self._replace(conn, alert):
            conn.execute(sa.insert(outbox).values(**self._new_row(alert, status, now)))
        if alert.remind_after and alert.workflow is not None:
            reminding = self._new_row(alert, REMINDING, now)
            reminding |= {"key": None, "loud": True, "next_attempt_at": now + alert.remind_after}
            conn.execute(sa.insert(outbox).values(**reminding))

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
            "workflow": alert.workflow,
            "happened_at": alert.happened_at,
            "remind_after": alert.remind_after,
        }

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

    def _summarise(self, conn: sa.Connection) -> int:
        """Turn the held rows no mute holds any more into one summary alert.

        It lists each incident once (``bot.notices.held_incidents``) and is
        loud iff one of the alerts it stands for was. Returns how many items
        it lists.
        """
        now = self._clock()
        mutes = self._mutes(conn, now)
        held = conn.execute(
            sa.select(outbox).where(outbox.c.status == HELD).order_by(outbox.c.id)
        ).all()
        released = [row for row in held if not mutes.hold(row.workflow)]
        if not released:
            return 0
        conn.execute(
            sa.update(outbox)
            .where(outbox.c.id.in_([row.id for row in released]))
            .values(status=SUMMARISED)
        )
        items = held_incidents(
            [Held(row.key, row.text, row.happened_at or row.created_at) for row in released],
            now,
            self._tz,
        )
        loud = any(row.loud for row in released)
        summary = Alert(summary_text(items), loud=loud, mergeable=False)
        conn.execute(sa.insert(outbox).values(**self._new_row(summary, PENDING, now)))
        return len(items)


def _in_chat(chat_id: int | None) -> sa.ColumnElement[bool]:
    return outbox.c.chat_id.is_(None) if chat_id is None else outbox.c.chat_id == chat_id
