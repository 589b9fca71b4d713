"""The fleet behind one ``SupervisorAPI``: local workflows asked directly, the others via the DB.

``status()`` of everything reads what each node published (no round trip
per node); every other call about a workflow on another node is a command
its node runs (``supervisor.fleet.commands``), and one that changes
something, asked in a chat request, is recorded even for a local workflow
(``supervisor.fleet.requests``). Heal runs on the workflow's
node too (``/fix``, and its buttons by the proposal's workflow). The agent
bridge works in a workflow's directory with the person who asked, so it is
refused for a workflow that runs elsewhere, with a line saying where.

``names`` is synchronous in the protocol, so the fleet's names are the
node's cache of who runs what (``FleetNode.owners``), refreshed on its
heartbeat and by every ``status()``.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Sequence
from typing import Any

from supervisor.agent.types import Workspace
from supervisor.api import SupervisorAPI, SupervisorError, UnknownWorkflow
from supervisor.bus import Subscription
from supervisor.diagnosis.types import EvidencePack, Verdict
from supervisor.events import EventRecord, OwnSpend, WorkflowStatus
from supervisor.fleet.node import FleetNode
from supervisor.fleet.registry import NodeInfo
from supervisor.heal.store import Proposal, ProposalStore


class FleetSupervisor:
    """``SupervisorAPI`` over this node's supervisor and the fleet's DB."""

    def __init__(self, local: SupervisorAPI, node: FleetNode) -> None:
        self.local = local
        self.node = node
        self._store: ProposalStore | None = None

    @property
    def names(self) -> Sequence[str]:
        return [*self.local.names, *self._remote]

    @property
    def _remote(self) -> dict[str, str]:
        """The other nodes' workflows and their nodes."""
        mine = set(self.local.names)
        return {name: node for name, node in self.node.owners.items() if name not in mine}

    async def nodes(self) -> list[NodeInfo]:
        return (await self.nodes_and_statuses())[0]

    async def nodes_and_statuses(self) -> tuple[list[NodeInfo], list[WorkflowStatus]]:
        """Every node, and every workflow's status tagged with its node (local ones live)."""
        infos, published = await self.node.view()
        mine = set(self.local.names)
        local = [dataclasses.replace(s, node=self.node.name) for s in await self.local.status()]
        others = [
            dataclasses.replace(status, node=node, heartbeat_age=None)
            for node, status in published
            if status.name not in mine
        ]
        return infos, [*local, *others]

    async def _where(self, name: str) -> str | None:
        """None for a local workflow, else the node that runs it; unknown names refused."""
        if name in self.local.names:
            return None
        owner = self._remote.get(name) or await self.node.owner(name)
        if owner is None or owner == self.node.name:
            raise UnknownWorkflow(name, self.names)
        return owner

    async def _ask(self, name: str, verb: str, **args: Any) -> Any:
        """Through the node even when local: a change asked in a chat request is recorded."""
        owner = await self._where(name) or self.node.name
        return await self.node.call(owner, verb, {"name": name, **args})

    async def _here(self, name: str, what: str) -> None:
        owner = await self._where(name)
        if owner is not None:
            raise SupervisorError(
                f"{name} runs on node {owner}: {what} works on the node that runs the "
                "workflow, and this chat is served by node "
                f"{self.node.name}"
            )

    async def start(self, name: str) -> WorkflowStatus:
        return await self._tagged(await self._ask(name, "start"), name)

    async def stop(self, name: str) -> WorkflowStatus:
        return await self._tagged(await self._ask(name, "stop"), name)

    async def restart(self, name: str) -> WorkflowStatus:
        return await self._tagged(await self._ask(name, "restart"), name)

    async def pause(self, name: str) -> WorkflowStatus:
        return await self._tagged(await self._ask(name, "pause"), name)

    async def resume(self, name: str) -> WorkflowStatus:
        return await self._tagged(await self._ask(name, "resume"), name)

    async def budget_resume(self, name: str, approver: str) -> WorkflowStatus:
        return await self._tagged(await self._ask(name, "budget_resume", approver=approver), name)

    async def budget_raise(self, name: str, approver: str) -> WorkflowStatus:
        return await self._tagged(await self._ask(name, "budget_raise", approver=approver), name)

    async def own_spend(self) -> OwnSpend:
        """The ledger is the fleet's (one control DB): this node's reading is everyone's."""
        return await self.local.own_spend()

    async def _tagged(self, status: WorkflowStatus, name: str) -> WorkflowStatus:
        return dataclasses.replace(status, node=self._remote.get(name, self.node.name))

    async def status(self, name: str | None = None) -> list[WorkflowStatus]:
        if name is None:
            return (await self.nodes_and_statuses())[1]
        statuses: list[WorkflowStatus] = await self._ask(name, "status")
        return [await self._tagged(status, name) for status in statuses]

    async def tail(self, name: str, lines: int) -> list[str]:
        tailed: list[str] = await self._ask(name, "tail", lines=lines)
        return tailed

    async def log_bytes(self, name: str, limit: int) -> bytes:
        data: bytes = await self._ask(name, "log_bytes", limit=limit)
        return data

    async def why(self, name: str) -> Verdict:
        verdict: Verdict = await self._ask(name, "why")
        return verdict

    async def evidence(self, name: str) -> EvidencePack:
        pack: EvidencePack = await self._ask(name, "evidence")
        return pack

    async def recent_events(self, name: str, limit: int = 10) -> list[EventRecord]:
        records: list[EventRecord] = await self._ask(name, "recent_events", limit=limit)
        return records

    async def workspace(self, name: str) -> Workspace:
        await self._here(name, "the agent")
        return await self.local.workspace(name)

    async def fix(self, name: str, note: str | None = None) -> Proposal:
        proposal: Proposal = await self._ask(name, "fix", note=note)
        return proposal

    async def _decide(self, verb: str, proposal: str, **args: Any) -> Any:
        """A heal button goes to the node of the proposal's workflow (proposals are shared)."""
        stored = await asyncio.to_thread(self._proposals().get, proposal)
        if stored is None:  # the local supervisor says what is wrong with it
            return await getattr(self.local, verb)(proposal, *args.values())
        owner = await self._where(stored.workflow) or self.node.name
        return await self.node.call(
            owner, verb, {"name": stored.workflow, "proposal": proposal, **args}
        )

    def _proposals(self) -> ProposalStore:
        if self._store is None:
            self._store = ProposalStore(self.node.engine)
        return self._store

    async def heal_apply(self, proposal: str, approver: str) -> Proposal:
        applied: Proposal = await self._decide("heal_apply", proposal, approver=approver)
        return applied

    async def heal_reject(self, proposal: str, approver: str) -> Proposal:
        rejected: Proposal = await self._decide("heal_reject", proposal, approver=approver)
        return rejected

    async def heal_rollback(self, proposal: str, approver: str) -> str:
        commit: str = await self._decide("heal_rollback", proposal, approver=approver)
        return commit

    async def heal_patch(self, proposal: str) -> tuple[str, bytes]:
        patch: tuple[str, bytes] = await self._decide("heal_patch", proposal)
        return patch

    def events(self) -> Subscription:
        """This node's events: every node turns its own into alerts in the shared outbox."""
        return self.local.events()
