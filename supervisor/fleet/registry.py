"""The fleet's nodes and workflows in the DB: joining, heartbeats, statuses, down and back.

A node joins in one transaction serialised by an advisory lock, so two nodes
starting at once cannot both claim a name: it is refused if a live copy of
the same node runs elsewhere, or if a live node already runs a workflow of
the same name (names are unique across the fleet); the names of a node that
is down pass to the node that now configures them. Each node stamps its row
every few seconds; the poller turns a stamp older than the node timeout into
"down" (once, ``down_changes``) and a fresh one after that into "back".
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from pydantic import TypeAdapter
from sqlalchemy.dialects.postgresql import insert

from supervisor.control import events
from supervisor.events import WorkflowStatus
from supervisor.fleet.tables import nodes, workflows

_STATUS = TypeAdapter(WorkflowStatus)
_JOIN_LOCK = 0x616370_666C74  # "acp" "flt": serialises joins fleet-wide
Published = list[tuple[str, WorkflowStatus]]  # (node, status) in node order


class FleetRefused(Exception):
    """This node may not join: the text says why, in one line naming both nodes."""


@dataclass(frozen=True, slots=True)
class Identity:
    """This run of this node."""

    node: str
    instance: str
    host: str
    pid: int
    forwards: bool = True  # it turns its own events into alerts (a bot); False: headless


@dataclass(frozen=True, slots=True)
class NodeInfo:
    """A node as the fleet sees it; ``alive`` judged by the DB's clock."""

    node: str
    host: str
    started_at: datetime
    seen_at: datetime
    alive: bool
    stopped: bool  # stopped cleanly: not down, just off
    down_since: datetime | None


@dataclass(frozen=True, slots=True)
class NodeChange:
    """A node went down (``down`` True, since ``since``) or came back (down since ``since``);
    ``said`` False for a return whose going down was never announced (it came back
    between two of the poller's looks, after more than the timeout)."""

    node: str
    down: bool
    since: datetime
    workflows: int
    said: bool = True


def encode_status(status: WorkflowStatus) -> str:
    return _STATUS.dump_json(status).decode()


def decode_status(text: str) -> WorkflowStatus:
    return _STATUS.validate_json(text)


def join(conn: sa.Connection, me: Identity, names: Sequence[str], timeout: float) -> list[str]:
    """Register this run and claim its workflow names; the names taken over from down nodes.

    Raises ``FleetRefused`` for a live copy of this node or a name a live node runs.
    """
    conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_JOIN_LOCK)))
    live = _live(timeout)
    other = conn.execute(
        sa.select(nodes.c.host, nodes.c.pid, nodes.c.seen_at).where(
            nodes.c.node == me.node, nodes.c.instance != me.instance, live
        )
    ).first()
    if other is not None and other.host == me.host and not pid_alive(other.pid):
        other = None  # this host's previous run, killed: its pid is gone, so is it
    if other is not None:
        raise FleetRefused(
            f"node {me.node} is already running (pid {other.pid} on {other.host}); "
            "give this one another SUPERVISOR_NODE"
        )
    owners = conn.execute(
        sa.select(workflows.c.workflow, workflows.c.node, live.label("live"))
        .select_from(workflows.join(nodes, workflows.c.node == nodes.c.node, isouter=True))
        .where(workflows.c.workflow.in_(list(names)), workflows.c.node != me.node)
    ).all()
    clash = next((row for row in owners if row.live), None)
    if clash is not None:
        raise FleetRefused(
            f"workflow {clash.workflow!r} is configured on node {clash.node} and on node "
            f"{me.node}; names must be unique across the fleet"
        )
    now = sa.func.now()
    # Silent past the timeout and not marked yet: it was down, even if nobody looked in time.
    silent = sa.and_(
        nodes.c.stopped_at.is_(None),
        nodes.c.down_since.is_(None),
        nodes.c.seen_at < sa.func.now() - timedelta(seconds=timeout),
    )
    values = {
        "down_since": sa.case((silent, nodes.c.seen_at), else_=nodes.c.down_since),
        "instance": me.instance,
        "host": me.host,
        "pid": me.pid,
        "started_at": now,
        "seen_at": now,
        "stopped_at": None,
        "forwards": me.forwards,
        "first_event": sa.select(sa.func.coalesce(sa.func.max(events.c.id), 0)).scalar_subquery(),
    }
    conn.execute(
        insert(nodes)
        .values(node=me.node, **{k: v for k, v in values.items() if k != "down_since"})
        .on_conflict_do_update(index_elements=[nodes.c.node], set_=values)
    )
    conn.execute(
        sa.delete(workflows).where(
            sa.or_(
                sa.and_(workflows.c.node == me.node, workflows.c.workflow.not_in(list(names))),
                workflows.c.workflow.in_([row.workflow for row in owners]),
            )
        )
    )
    for position, name in enumerate(names):  # known at once, before the first publish
        conn.execute(
            insert(workflows)
            .values(
                workflow=name,
                node=me.node,
                position=position,
                status=encode_status(WorkflowStatus(name=name, state="stopped")),
                updated_at=now,
            )
            .on_conflict_do_update(
                index_elements=[workflows.c.workflow],
                set_={"node": me.node, "position": position},
            )
        )
    return [f"{row.workflow} (from {row.node})" for row in owners]


def headless(conn: sa.Connection) -> list[tuple[str, int, list[str]]]:
    """The nodes whose events the poller forwards: name, first event id, workflows."""
    rows = conn.execute(
        sa.select(nodes.c.node, nodes.c.first_event, workflows.c.workflow)
        .select_from(nodes.join(workflows, workflows.c.node == nodes.c.node, isouter=True))
        .where(nodes.c.forwards.is_(False))
        .order_by(nodes.c.node, workflows.c.position)
    ).all()
    found: dict[str, tuple[int, list[str]]] = {}
    for row in rows:
        _, names = found.setdefault(row.node, (int(row.first_event), []))
        if row.workflow is not None:
            names.append(row.workflow)
    return [(node, first, names) for node, (first, names) in found.items()]


def beat(conn: sa.Connection, me: Identity) -> bool:
    """Stamp this node alive; False if another run has taken the node's row meanwhile."""
    done = conn.execute(
        sa.update(nodes)
        .where(nodes.c.node == me.node, nodes.c.instance == me.instance)
        .values(seen_at=sa.func.now())
        .returning(nodes.c.node)
    ).first()
    return done is not None


def leave(conn: sa.Connection, me: Identity) -> None:
    """A clean stop: the node is off, not down (no alarm), and its names are free."""
    conn.execute(
        sa.update(nodes)
        .where(nodes.c.node == me.node, nodes.c.instance == me.instance)
        .values(stopped_at=sa.func.now(), seen_at=sa.func.now())
    )


def publish(conn: sa.Connection, node: str, statuses: Sequence[tuple[int, WorkflowStatus]]) -> None:
    """Upsert these workflows' statuses as this node sees them now."""
    for position, status in statuses:
        values = {
            "node": node,
            "position": position,
            "status": encode_status(status),
            "updated_at": sa.func.now(),
        }
        conn.execute(
            insert(workflows)
            .values(workflow=status.name, **values)
            .on_conflict_do_update(index_elements=[workflows.c.workflow], set_=values)
        )


def view(conn: sa.Connection, timeout: float) -> tuple[list[NodeInfo], Published]:
    """Every node, then every workflow's published status with its node, in node order."""
    rows = conn.execute(sa.select(nodes, _live(timeout).label("live")).order_by(nodes.c.node)).all()
    infos = [
        NodeInfo(
            node=row.node,
            host=row.host,
            started_at=row.started_at,
            seen_at=row.seen_at,
            alive=bool(row.live),
            stopped=row.stopped_at is not None,
            down_since=row.down_since,
        )
        for row in rows
    ]
    published = conn.execute(
        sa.select(workflows.c.node, workflows.c.status).order_by(
            workflows.c.node, workflows.c.position
        )
    ).all()
    return infos, [(row.node, decode_status(row.status)) for row in published]


def owners(conn: sa.Connection) -> dict[str, str]:
    """Every workflow of the fleet and the node that runs it."""
    rows = conn.execute(sa.select(workflows.c.workflow, workflows.c.node)).all()
    return {str(row.workflow): str(row.node) for row in rows}


def owner(conn: sa.Connection, workflow: str) -> str | None:
    return conn.execute(
        sa.select(workflows.c.node).where(workflows.c.workflow == workflow)
    ).scalar()


def down_changes(conn: sa.Connection, timeout: float) -> list[NodeChange]:
    """Mark the nodes newly silent as down, and the newly heard-from as back; say which.

    Each change is returned once: the rows are locked, read and marked in
    one transaction, so a poller after a failover does not repeat one.
    """
    count = (
        sa.select(sa.func.count())
        .where(workflows.c.node == nodes.c.node)
        .scalar_subquery()
        .label("workflows")
    )
    went = sa.and_(nodes.c.down_since.is_(None), nodes.c.stopped_at.is_(None), ~_live(timeout))
    came = sa.and_(
        nodes.c.down_since.is_not(None),
        sa.or_(_live(timeout), nodes.c.stopped_at.is_not(None)),
        nodes.c.seen_at > nodes.c.down_since,
    )
    changes: list[NodeChange] = []
    for condition, is_down in ((went, True), (came, False)):
        rows = conn.execute(
            sa.select(nodes.c.node, nodes.c.seen_at, nodes.c.down_since, nodes.c.down_said, count)
            .where(condition)
            .with_for_update(of=nodes)
        ).all()
        if not rows:
            continue
        marks = (
            {"down_since": nodes.c.seen_at, "down_said": True}
            if is_down
            else {"down_since": None, "down_said": False}
        )
        conn.execute(
            sa.update(nodes).where(nodes.c.node.in_([row.node for row in rows])).values(**marks)
        )
        changes += [
            NodeChange(
                row.node,
                is_down,
                row.seen_at if is_down else row.down_since,
                row.workflows,
                said=is_down or bool(row.down_said),
            )
            for row in rows
        ]
    return changes


def _live(timeout: float) -> sa.ColumnElement[bool]:
    return sa.and_(
        nodes.c.stopped_at.is_(None), nodes.c.seen_at > sa.func.now() - timedelta(seconds=timeout)
    )


def pid_alive(pid: int) -> bool:
    """Whether a process of that pid exists on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's: alive
    return True
