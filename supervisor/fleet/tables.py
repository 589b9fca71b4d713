"""The fleet's tables in the shared control DB, created at a node's first start.

A versioned set of their own (``FLEET_SCHEMA``, ``supervisor.dbschema``)
beside the control DB's: nothing in the single-node schema changes.
Times are the database's own clock (``now()``), never a node's: nodes'
clocks may disagree, and every comparison of a lease or a heartbeat is made
by the server that stamped it.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic.operations import Operations

from supervisor.dbschema import Schema

metadata = sa.MetaData()

# One row per node: who it is, when it last said so, and whether the fleet was told it is down.
nodes = sa.Table(
    "fleet_nodes",
    metadata,
    sa.Column("node", sa.String(64), primary_key=True),
    sa.Column("instance", sa.String(64), nullable=False),  # this run of it: a copy is refused
    sa.Column("host", sa.String(255), nullable=False),
    sa.Column("pid", sa.Integer, nullable=False),
    sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("seen_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("stopped_at", sa.DateTime(timezone=True)),  # a clean stop: not "down"
    sa.Column("down_since", sa.DateTime(timezone=True)),  # silent past the timeout since then
    sa.Column("down_said", sa.Boolean, nullable=False, server_default=sa.false()),
    # False for a headless node (python -m supervisor run): the poller forwards its events,
    # from the event log's end when it joined (first_event) on.
    sa.Column("forwards", sa.Boolean, nullable=False, server_default=sa.true()),
    sa.Column("first_event", sa.BigInteger, nullable=False, server_default="0"),
)

# Each workflow's owner and its status as the owner last published it (on change).
workflows = sa.Table(
    "fleet_workflows",
    metadata,
    sa.Column("workflow", sa.String(128), primary_key=True),
    sa.Column("node", sa.String(64), nullable=False, index=True),
    sa.Column("position", sa.Integer, nullable=False),  # order in the node's TOML
    sa.Column("status", sa.Text, nullable=False),  # WorkflowStatus as JSON
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

# The poller's lease: one row; whoever holds an unexpired lease polls Telegram.
lease = sa.Table(
    "fleet_lease",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("node", sa.String(64)),
    sa.Column("term", sa.BigInteger, nullable=False),  # grows at each change of holder
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
)


def _request_v2() -> sa.Column[Any]:
    """Added in version 2 to commands: the key of the chat request that asked
    (``supervisor.fleet.requests``), unique, so a request handled again after a failover
    finds its command instead of doubling it."""
    return sa.Column("request", sa.String(64))


REQUEST_INDEX = "fleet_commands_request"


def _updates_v2() -> list[sa.Column[Any]]:
    """Added in version 2: which run of the node took the update, the update itself until
    it is finished (what a new poller replays), and when it was."""
    return [
        sa.Column("instance", sa.String(64)),
        sa.Column("payload", sa.Text),
        sa.Column("finished_at", sa.DateTime(timezone=True)),
    ]


# Commands for the node that runs the workflow, claimed with FOR UPDATE SKIP LOCKED.
commands = sa.Table(
    "fleet_commands",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
    sa.Column("node", sa.String(64), nullable=False),
    sa.Column("verb", sa.String(32), nullable=False),
    sa.Column("args", sa.Text, nullable=False),  # JSON
    sa.Column("state", sa.String(16), nullable=False),  # queued, running, done, failed, expired
    sa.Column("result", sa.Text),  # JSON: the answer, or {"error": "..."}
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("finished_at", sa.DateTime(timezone=True)),
    sa.Index("fleet_commands_queued", "node", "state"),
    _request_v2(),
    sa.Index(REQUEST_INDEX, "request", unique=True),
)

# Telegram updates taken: a new poller may be served one its predecessor took (skipped),
# and replays one its predecessor died handling (``payload`` until ``finished_at``).
updates = sa.Table(
    "fleet_updates",
    metadata,
    sa.Column("update_id", sa.BigInteger, primary_key=True),
    sa.Column("node", sa.String(64), nullable=False),
    sa.Column("handled_at", sa.DateTime(timezone=True), nullable=False),  # taken at
    *_updates_v2(),
)


def _to_v2(op: Operations) -> None:
    for column in _updates_v2():
        op.add_column(updates.name, column)
    op.add_column(commands.name, _request_v2())
    op.create_index(REQUEST_INDEX, commands.name, ["request"], unique=True)


FLEET_SCHEMA = Schema(
    "fleet tables", "fleet_schema_version", 2, metadata, {1: _to_v2}, unstamped="fleet_nodes"
)

# NOTIFY payloads: "cmd:<node>" (work for it), "done:<id>" (answered), "joined:<node>",
# "outbox" (rows for the poller to deliver)
CHANNEL = "acp_fleet"
