"""Reminders of give-ups: a loud repeat every period until the workflow is acknowledged.

An alert with ``remind_after`` leaves a ``reminding`` row beside its message
(``bot.outbox_store``); each period it queues a fresh pending copy, and it
turns ``acknowledged`` on ``/ack`` or when an alert ``ends_reminders`` (the
workflow was started or stopped). The reminders are rows, so they outlive a
restart. Apart from ``bot.outbox_store`` because repeating is a rule of its
own, not part of delivering a row; each function works in the caller's
transaction (``conn``).
"""

from __future__ import annotations

from datetime import tzinfo

import sqlalchemy as sa

from bot.notices import reminder_text
from bot.outbox_tables import ACKNOWLEDGED, PENDING, REMINDING, Alert, new_row, outbox
from bot.pacing import decode_buttons


def queue_due_reminders(conn: sa.Connection, now: float, timezone: tzinfo) -> float | None:
    """Queue a loud reminder for each one due; returns seconds until the next is due.

    After a pause longer than a period (the bot was down) one reminder goes
    out, not one per missed period, and the next comes a period later.
    """
    due = conn.execute(
        sa.select(outbox).where(outbox.c.status == REMINDING, outbox.c.next_attempt_at <= now)
    ).all()
    for row in due:
        text = reminder_text(row.text, row.happened_at, now, timezone)
        reminder = Alert(
            text,
            decode_buttons(row.buttons),
            critical=row.critical,
            mergeable=False,
            workflow=row.workflow,
            happened_at=now,  # it is news now: no "happened at" note when sent
        )
        conn.execute(sa.insert(outbox).values(**new_row(reminder, PENDING, now)))
        conn.execute(
            sa.update(outbox)
            .where(outbox.c.id == row.id)
            .values(next_attempt_at=now + row.remind_after)
        )
    following = conn.execute(
        sa.select(sa.func.min(outbox.c.next_attempt_at)).where(outbox.c.status == REMINDING)
    ).scalar()
    return None if following is None else following - now


def start_reminding(conn: sa.Connection, alert: Alert, now: float) -> None:
    """Leave ``alert``'s ``reminding`` row if it asks for reminders; the first is a period on."""
    if alert.remind_after and alert.workflow is not None:
        reminding = new_row(alert, REMINDING, now)
        reminding |= {"key": None, "loud": True, "next_attempt_at": now + alert.remind_after}
        conn.execute(sa.insert(outbox).values(**reminding))


def end_reminders(conn: sa.Connection, workflow: str) -> int:
    """Stop reminding of ``workflow``'s alerts; returns how many reminders stopped."""
    ended = conn.execute(
        sa.update(outbox)
        .where(outbox.c.status == REMINDING, outbox.c.workflow == workflow)
        .values(status=ACKNOWLEDGED)
    )
    return ended.rowcount
