"""The outbox's tables, a row's statuses, and the ``Alert`` that becomes a row.

Shared by the modules that query the outbox: ``bot.outbox_store`` (saving
and delivering rows), ``bot.mutes`` (holding rows, summarising them) and
``bot.reminders`` (repeating give-ups). Kept apart so those three import
the schema, not each other.

Rows move ``pending`` -> ``sent`` (or ``failed`` when Telegram refuses one for
good); while the chat, or the alert's workflow, is muted, non-critical rows
wait as ``held`` and become ``summarised`` when no mute holds them any more.
An alert to be repeated until acknowledged leaves a ``reminding`` row whose
status becomes ``acknowledged`` when it stops. Times are Unix epoch seconds.
Portable SQLAlchemy Core, so the control DB may be Postgres. Columns added
after the first release are added in place to an older table
(``add_missing_columns``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from alembic.operations import Operations
from alembic.runtime.migration import MigrationContext

from bot.pacing import encode_buttons
from bot.text import Button

PENDING, SENT, HELD, SUMMARISED, FAILED = "pending", "sent", "held", "summarised", "failed"
REMINDING, ACKNOWLEDGED = "reminding", "acknowledged"  # a reminder's row, not a message's
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


def new_row(alert: Alert, status: str, now: float, gather_seconds: float = 0.0) -> dict[str, Any]:
    """The columns of ``alert``'s row; mergeable and keyless, it waits ``gather_seconds``."""
    gather = gather_seconds if alert.mergeable and alert.key is None else 0.0
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


def add_missing_columns(conn: sa.Connection) -> None:
    """Bring a ``bot_outbox`` made by an older release up to today's columns."""
    present = {column["name"] for column in sa.inspect(conn).get_columns(outbox.name)}
    operations = Operations(MigrationContext.configure(conn))
    for column in [*_target_columns(), *_alert_columns()]:
        if column.name not in present:
            operations.add_column(outbox.name, column)
