"""Heal inside the supervisor: the API's heal calls, and what a failure sets off.

``HealDesk`` joins the ``Healer`` (git, gates, the model) to the
supervisor's own powers: ``/why`` for the diagnosis, the evidence for the
failure signature, restarts, and publishing events (recorded in the control
DB before the bot renders them, so a proposal or a rollback reaches the chat
exactly once). After every crash or hang ``after_failure`` runs in the
background: a proposal on probation whose failure came back is rolled back,
loudly; with ``heal = "propose"`` or ``"auto"``, the same failure twice
brings a proposal by itself, and ``"auto"`` applies it when every gate passed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from supervisor.config import ResolvedWorkflow
from supervisor.diagnosis.types import EvidencePack, Verdict
from supervisor.events import Event, EventRecord, HealApplied, HealProposed, HealRolledBack
from supervisor.heal.healer import Healer, HealRefused
from supervisor.heal.store import Proposal

log = logging.getLogger("supervisor")
AUTO_APPROVER = 'heal = "auto"'
EVENT_DIFF_CHARS = 16_000
UNASKED_AFTER = 2  # the same failure signature this often: a proposal unasked
LOG_LINES = 40


@dataclass(frozen=True)
class SupervisorHands:
    """What heal may ask of the supervisor."""

    why: Callable[[str], Awaitable[Verdict]]
    evidence: Callable[[str], Awaitable[EvidencePack]]
    recent_events: Callable[[str, int], Awaitable[list[EventRecord]]]
    tail: Callable[[str, int], Awaitable[list[str]]]
    restart: Callable[[str], Awaitable[object]]
    publish: Callable[[Event], None]
    now: Callable[[], datetime]


class HealDesk:
    """The heal calls of ``SupervisorAPI``; failures are answered by ``HealRefused``."""

    def __init__(
        self, healer: Healer, workflows: Mapping[str, ResolvedWorkflow], hands: SupervisorHands
    ) -> None:
        self.healer = healer
        self.workflows = workflows
        self.hands = hands

    async def fix(self, name: str, note: str | None = None) -> Proposal:
        """Propose a fix for ``name``'s last failure (``/fix``); published as ``HealProposed``."""
        workflow = self.workflows[name]
        verdict = await self.hands.why(name)
        pack = await self.hands.evidence(name)
        events = await self.hands.recent_events(name, 20)
        proposal = await self.healer.propose(
            workflow,
            verdict,
            pack.signature,
            note=note,
            failed_after=failed_after(events),
            log_tail=await self.hands.tail(name, LOG_LINES),
        )
        applying = workflow.config.heal == "auto" and proposal.ready
        self.hands.publish(_proposed(proposal, self.hands.now(), applying=applying))
        if applying:
            await self.apply(proposal.id, AUTO_APPROVER)
        return proposal

    async def apply(self, proposal_id: str, approver: str) -> Proposal:
        """Apply & restart: commit, fast-forward, restart; probation begins."""
        workflow = self._of(proposal_id)
        applied = await asyncio.to_thread(self.healer.apply, proposal_id, approver, workflow)
        await self.hands.restart(workflow.name)
        assert applied.commit is not None
        assert applied.previous is not None
        self.hands.publish(
            HealApplied(
                workflow=workflow.name,
                time=self.hands.now(),
                proposal=applied.id,
                commit=applied.commit,
                previous=applied.previous,
                approver=approver,
                probation_seconds=workflow.config.heal_probation_seconds,
            )
        )
        return applied

    async def reject(self, proposal_id: str, approver: str) -> Proposal:
        workflow = self._of(proposal_id)
        return await asyncio.to_thread(self.healer.reject, proposal_id, approver, workflow)

    async def rollback(self, proposal_id: str, reason: str) -> str:
        """Revert an applied proposal and restart; published as ``HealRolledBack`` (loud)."""
        workflow = self._of(proposal_id)
        revert = await asyncio.to_thread(self.healer.rollback, proposal_id, reason, workflow)
        await self.hands.restart(workflow.name)
        self.hands.publish(
            HealRolledBack(
                workflow=workflow.name,
                time=self.hands.now(),
                proposal=proposal_id,
                commit=revert,
                reason=reason,
            )
        )
        return revert

    async def patch(self, proposal_id: str) -> tuple[str, bytes]:
        """The proposal's whole diff as a ``.patch`` file."""
        proposal = await asyncio.to_thread(self.healer.store.get, proposal_id)
        if proposal is None:
            raise HealRefused("no such proposal")
        return f"{proposal.workflow}-{proposal.id}.patch", proposal.diff.encode()

    async def after_failure(self, name: str) -> None:
        """A crash or hang happened: roll back a relapsed fix, or propose one unasked."""
        workflow = self.workflows[name]
        watching = await asyncio.to_thread(self.healer.store.on_probation, name)
        if workflow.config.heal == "off" and watching is None:
            return  # nothing to do: no evidence gathered (it reads logs and runs git)
        pack = await self.hands.evidence(name)
        relapsed = await asyncio.to_thread(self.healer.relapsed, name, pack.signature)
        if relapsed is not None:
            await self.rollback(relapsed.id, "the same failure came back during probation")
            return
        if workflow.config.heal == "off" or pack.failures_with_signature < UNASKED_AFTER:
            return
        try:
            await self.fix(name)
        except HealRefused as refused:
            log.info("%s: no fix proposed unasked: %s", name, refused)

    def _of(self, proposal_id: str) -> ResolvedWorkflow:
        proposal = self.healer.store.get(proposal_id)
        if proposal is None or proposal.workflow not in self.workflows:
            raise HealRefused("no such proposal")
        return self.workflows[proposal.workflow]


def failed_after(events: Sequence[EventRecord]) -> float | None:
    """Seconds from the last start to the failure after it (the point a smoke run must pass)."""
    failure = None
    for event in events:  # newest first
        if event.kind in ("crashed", "hung") and failure is None:
            failure = event
        elif event.kind == "started" and failure is not None:
            return max(0.0, (failure.time - event.time).total_seconds())
    return None


def _proposed(proposal: Proposal, now: datetime, *, applying: bool) -> HealProposed:
    return HealProposed(
        workflow=proposal.workflow,
        time=now,
        proposal=proposal.id,
        files=proposal.files,
        added=proposal.added,
        removed=proposal.removed,
        gates=tuple((gate.name, gate.passed, gate.detail) for gate in proposal.gates),
        rationale=proposal.rationale,
        cost_usd=proposal.cost_usd,
        diff=proposal.diff[:EVENT_DIFF_CHARS],
        applying=applying,
    )
