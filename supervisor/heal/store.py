"""Heal proposals in the control DB: what each changed, what its gates said, where it stands.

A proposal moves ``pending`` -> ``applied`` -> (``rolled_back``), or ends
``rejected``, ``expired`` (24 h), ``stale`` (the live tree moved) or ``failed``
(a gate refused it). The budgets are counted here, from the rows themselves,
so they hold across restarts: two proposals per failure signature, three per
workflow per day, one pending at a time. Blocking calls: run them off the
event loop.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import sqlalchemy as sa

from supervisor.dbengine import create_tables
from supervisor.heal.types import GateResult

Status = Literal["pending", "applied", "rolled_back", "rejected", "expired", "stale", "failed"]
PER_SIGNATURE = 2
PER_DAY = 3
DAY_SECONDS = 86400.0

metadata = sa.MetaData()
proposals = sa.Table(
    "heal_proposals",
    metadata,
    sa.Column("id", sa.String(16), primary_key=True),
    sa.Column("workflow", sa.String(255), nullable=False, index=True),
    sa.Column("signature", sa.String(255), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("base", sa.String(64), nullable=False),
    sa.Column("branch", sa.String(255), nullable=False),
    sa.Column("worktree", sa.Text, nullable=False),
    sa.Column("diff", sa.Text, nullable=False),
    sa.Column("files", sa.Integer, nullable=False),
    sa.Column("added", sa.Integer, nullable=False),
    sa.Column("removed", sa.Integer, nullable=False),
    sa.Column("gates", sa.Text, nullable=False),  # JSON [[name, passed, detail], ...]
    sa.Column("rationale", sa.Text, nullable=False),  # JSON list of lines
    sa.Column("cause", sa.Text, nullable=False),  # the diagnosis it answers
    sa.Column("cost_usd", sa.Float, nullable=False),
    sa.Column("commit", sa.String(64)),
    sa.Column("previous", sa.String(64)),  # the live HEAD before it was applied
    sa.Column("applied_at", sa.Float),
    sa.Column("approver", sa.String(128)),
    sa.Column("probation_until", sa.Float),
    sa.Column("note", sa.Text),
)


@dataclass(frozen=True, slots=True)
class Proposal:
    """One stored proposal."""

    id: str
    workflow: str
    signature: str
    status: Status
    created_at: float
    base: str
    branch: str
    worktree: str
    diff: str
    files: int
    added: int
    removed: int
    gates: tuple[GateResult, ...]
    rationale: tuple[str, ...]
    cause: str
    cost_usd: float
    commit: str | None = None
    previous: str | None = None
    applied_at: float | None = None
    approver: str | None = None
    probation_until: float | None = None
    note: str | None = None

    @property
    def ready(self) -> bool:
        """Every gate passed: it may be applied."""
        return all(gate.passed for gate in self.gates)


class ProposalStore:
    """The proposals table and its budgets."""

    def __init__(self, engine: sa.Engine, *, clock: Callable[[], float] = time.time) -> None:
        self.engine = engine
        self.clock = clock
        create_tables(engine, metadata)

    def over_budget(self, workflow: str, signature: str) -> str | None:
        """Why no new proposal may be made now, or None."""
        now = self.clock()
        with self.engine.connect() as conn:
            mine = conn.execute(
                sa.select(proposals.c.signature, proposals.c.status, proposals.c.created_at).where(
                    proposals.c.workflow == workflow
                )
            ).all()
        if any(row.status == "pending" and now - row.created_at < DAY_SECONDS for row in mine):
            return "a proposal is already waiting for a decision"
        if sum(1 for row in mine if row.signature == signature) >= PER_SIGNATURE:
            return f"{PER_SIGNATURE} proposals were already made for this failure"
        if sum(1 for row in mine if now - row.created_at < DAY_SECONDS) >= PER_DAY:
            return f"{PER_DAY} proposals were already made for it today"
        return None

    def add(self, **columns: Any) -> Proposal:
        """Store a new proposal (its id is made here)."""
        row = {
            "id": uuid.uuid4().hex[:10],
            "created_at": self.clock(),
            **columns,
            "gates": json.dumps([[g.name, g.passed, g.detail] for g in columns["gates"]]),
            "rationale": json.dumps(list(columns["rationale"])),
        }
        with self.engine.begin() as conn:
            conn.execute(sa.insert(proposals).values(**row))
        found = self.get(row["id"])
        assert found is not None
        return found

    def get(self, proposal_id: str) -> Proposal | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(proposals).where(proposals.c.id == proposal_id)).first()
        return _proposal(row) if row is not None else None

    def update(self, proposal_id: str, **values: Any) -> None:
        with self.engine.begin() as conn:
            conn.execute(sa.update(proposals).where(proposals.c.id == proposal_id).values(**values))

    def on_probation(self, workflow: str) -> Proposal | None:
        """The workflow's applied proposal whose probation has not ended, if any."""
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(proposals)
                .where(
                    proposals.c.workflow == workflow,
                    proposals.c.status == "applied",
                    proposals.c.probation_until > self.clock(),
                )
                .order_by(proposals.c.applied_at.desc())
                .limit(1)
            ).first()
        return _proposal(row) if row is not None else None


def _proposal(row: Any) -> Proposal:
    fields = dict(row._mapping)
    fields["gates"] = tuple(GateResult(*gate) for gate in json.loads(fields["gates"]))
    fields["rationale"] = tuple(json.loads(fields["rationale"]))
    return Proposal(**fields)
