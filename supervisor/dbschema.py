"""Sets of tables that carry a version in the shared database, one row each in ``supervisor_meta``.

A database without the set gets its newest tables and is stamped; one at an
older version is upgraded a step at a time with Alembic's operations, in the
caller's transaction and under the schema lock (nodes of a fleet starting
together on one Postgres); one stamped by a newer release is refused rather
than misread. The control DB and the fleet's tables are two such sets.

``create_all`` runs before the steps, so a table new in a later version is
made at its newest and needs no step; a step alters tables that existed at
its version only.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from alembic.operations import Operations
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Column, Connection, MetaData, String, Table, insert, inspect, select, update

from supervisor.dbengine import lock_schema

versions = MetaData()

meta = Table(
    "supervisor_meta",
    versions,
    Column("key", String(64), primary_key=True),
    Column("value", String(256), nullable=False),
)

Step = Callable[[Operations], None]


@dataclass(frozen=True, slots=True)
class Schema:
    """One versioned set: ``steps[n]`` upgrades it from version n to n + 1."""

    what: str  # how a refusal names it: "control DB", "fleet tables"
    key: str  # its row in supervisor_meta
    version: int
    metadata: MetaData
    steps: Mapping[int, Step]
    # A table the set had before it carried a version: found with no version stored, the
    # set is at version 1 (None: the set was stamped from its first release on).
    unstamped: str | None = None


class SchemaTooNew(RuntimeError):
    """The set was written by a newer release; the message says which and what to do."""


def settle(conn: Connection, schema: Schema) -> None:
    """Create what is missing, stamp a new set, upgrade an older one, refuse a newer one."""
    lock_schema(conn)
    unstamped = schema.unstamped is not None and inspect(conn).has_table(schema.unstamped)
    versions.create_all(conn)
    schema.metadata.create_all(conn)
    stored = conn.execute(select(meta.c.value).where(meta.c.key == schema.key)).scalar()
    if stored is None:
        version = 1 if unstamped else schema.version
        conn.execute(insert(meta).values(key=schema.key, value=str(version)))
    else:
        version = int(stored)
    if version > schema.version:
        raise SchemaTooNew(
            f"{schema.what} schema version {version} is newer than this release "
            f"({schema.version}); upgrade, or point SUPERVISOR_DB_URL elsewhere"
        )
    if version == schema.version:
        return
    operations = Operations(MigrationContext.configure(conn))
    for step in range(version, schema.version):
        schema.steps[step](operations)
    conn.execute(update(meta).where(meta.c.key == schema.key).values(value=str(schema.version)))
