"""Mutes, of everything or of one workflow, and the summary of the alerts they held.

A mute is a ``bot_kv`` row (``mute_until``, or ``mute_until:NAME`` for one
workflow) holding its end as an ISO time. While one holds an alert's
workflow, a non-critical alert is saved ``held`` instead of ``pending``
(``bot.outbox_store`` asks ``mutes_in_force`` in the transaction that inserts
the row); when no mute holds them any more, the held rows become one summary
alert. Apart from ``bot.outbox_store`` because holding and summarising is a
rule of its own, not part of delivering a row. Every function works in the
caller's transaction (``conn``); the store owns the engine and the
transactions, so a mute and the rows it releases change together.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo

import sqlalchemy as sa

from bot.notices import Held, held_incidents
from bot.outbox_tables import HELD, PENDING, SUMMARISED, Alert, kv, new_row, outbox
from bot.pacing import summary_text

MUTE_KEY = "mute_until"  # everything; a workflow's mute is MUTE_KEY:NAME


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


def _mute_key(workflow: str | None) -> str:
    return MUTE_KEY if workflow is None else f"{MUTE_KEY}:{workflow}"


def set_mute(conn: sa.Connection, until: datetime, workflow: str | None) -> None:
    """Hold ordinary alerts (of ``workflow`` only, if given) until ``until``."""
    key = _mute_key(workflow)
    conn.execute(sa.delete(kv).where(kv.c.key == key))
    conn.execute(sa.insert(kv).values(key=key, value=until.astimezone(UTC).isoformat()))


def end_mutes(conn: sa.Connection, workflow: str | None) -> None:
    """End ``workflow``'s mute, or (None) every mute; ``summarise_held`` then releases rows."""
    ending = [_mute_key(workflow)] if workflow is not None else _mute_ends(conn)
    conn.execute(sa.delete(kv).where(kv.c.key.in_(ending)))


def end_expired(conn: sa.Connection, now: float) -> tuple[float | None, bool]:
    """End mutes that have run out: (seconds until the next ends, or None; whether any ended)."""
    ends = _mute_ends(conn)
    expired = [key for key, end in ends.items() if end <= now]
    left = [end - now for end in ends.values() if end > now]
    if expired:
        conn.execute(sa.delete(kv).where(kv.c.key.in_(expired)))
    return min(left, default=None), bool(expired)


def mutes_in_force(conn: sa.Connection, now: float) -> Mutes:
    """The mutes that have not run out at ``now``."""
    ends = {key: end for key, end in _mute_ends(conn).items() if end > now}
    prefix = MUTE_KEY + ":"
    return Mutes(
        ends.get(MUTE_KEY),
        {key.removeprefix(prefix): end for key, end in ends.items() if key != MUTE_KEY},
    )


def _mute_ends(conn: sa.Connection) -> dict[str, float]:
    """Every stored mute (run out or not): its kv key and when it ends."""
    stored = conn.execute(
        sa.select(kv.c.key, kv.c.value).where(
            sa.or_(kv.c.key == MUTE_KEY, kv.c.key.startswith(MUTE_KEY + ":"))
        )
    ).all()
    return {key: datetime.fromisoformat(value).timestamp() for key, value in stored}


def summarise_held(conn: sa.Connection, now: float, timezone: tzinfo) -> int:
    """Turn the held rows no mute holds any more into one summary alert.

    It lists each incident once (``bot.notices.held_incidents``) and is
    loud iff one of the alerts it stands for was. Returns how many items
    it lists.
    """
    mutes = mutes_in_force(conn, now)
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
        timezone,
    )
    loud = any(row.loud for row in released)
    summary = Alert(summary_text(items), loud=loud, mergeable=False)
    conn.execute(sa.insert(outbox).values(**new_row(summary, PENDING, now)))
    return len(items)
