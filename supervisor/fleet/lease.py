"""Who polls Telegram: a lease row in Postgres, renewed by its holder, taken over when it lapses.

Why a lease row and not an advisory lock: a session lock is released only when
Postgres notices its connection is gone, which after a lost network can take
the server's TCP keepalive (minutes), not ``FLEET_FAILOVER_SECONDS``; nor
can the holder tell, from a lock, how long it may still trust it. A lease
has an expiry set by the server's clock, so:

- the holder renews every ``interval`` and stops polling by itself (fences)
  once its last renewal is older than ``fence``, measured on its own
  monotonic clock from before the renewal was sent, so a node cut off from
  the DB steps down before anyone else may step up;
- any other node takes the lease once it has expired (``ttl`` after the last
  renewal, by the server's clock); the holder's own clock never decides it.

With the defaults for a failover bound F: ``ttl`` 0.6 F, ``interval`` 0.1 F,
``fence`` 0.4 F. A kill -9 of the holder is noticed after at most ``ttl`` +
``interval`` (0.7 F); a clean stop releases the lease at once. ``term``
grows with each change of holder, for the logs.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert

from supervisor.fleet.tables import lease

_ROW = 1
_NEVER = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class LeaseTimes:
    """The lease's timings, all derived from the failover bound."""

    ttl: float
    interval: float
    fence: float

    @classmethod
    def for_failover(cls, failover_seconds: float) -> LeaseTimes:
        return cls(
            ttl=0.6 * failover_seconds,
            interval=0.1 * failover_seconds,
            fence=0.4 * failover_seconds,
        )


@dataclass(frozen=True, slots=True)
class Holder:
    """Who holds the lease now (``node`` None: nobody ever did), and whether it is in force."""

    node: str | None
    term: int
    valid: bool


@dataclass(frozen=True, slots=True)
class Held:
    """The lease is ours for ``term``; ``taken_from`` the node that held it before, if another."""

    term: int
    taken_from: str | None


def hold(conn: sa.Connection, node: str, ttl: float) -> Held | None:
    """Take the lease if it is free or lapsed, or renew ours; None while another holds it."""
    conn.execute(
        insert(lease)
        .values(id=_ROW, node=None, term=0, expires_at=_NEVER)
        .on_conflict_do_nothing(index_elements=[lease.c.id])
    )
    before = conn.execute(
        sa.select(lease.c.node).where(lease.c.id == _ROW).with_for_update()
    ).scalar()
    mine = lease.c.node == node
    term = conn.execute(
        sa.update(lease)
        .where(lease.c.id == _ROW, sa.or_(mine, lease.c.expires_at < sa.func.now()))
        .values(
            node=node,
            term=sa.case((mine, lease.c.term), else_=lease.c.term + 1),
            expires_at=sa.func.now() + timedelta(seconds=ttl),
        )
        .returning(lease.c.term)
    ).scalar()
    if term is None:
        return None
    return Held(int(term), before if before not in (None, node) else None)


def release(conn: sa.Connection, node: str) -> None:
    """Give the lease up at a clean stop, so another node takes over at once."""
    conn.execute(
        sa.update(lease)
        .where(lease.c.id == _ROW, lease.c.node == node)
        .values(expires_at=sa.func.now() - timedelta(seconds=1))
    )


def holder(conn: sa.Connection) -> Holder:
    row = conn.execute(
        sa.select(
            lease.c.node, lease.c.term, (lease.c.expires_at > sa.func.now()).label("valid")
        ).where(lease.c.id == _ROW)
    ).first()
    if row is None:
        return Holder(None, 0, valid=False)
    return Holder(row.node, int(row.term), bool(row.valid))
