"""The fleet behind one ``SupervisorAPI``: local workflows asked directly, the others via the DB.

``status()`` of everything reads what each node published (no round trip
per node); every other call about a workflow on another node is a command
its node runs (``supervisor.fleet.commands``). The agent bridge and heal
work in a workflow's directory, so they are refused for a workflow that
runs elsewhere, with a line saying where.

``names`` is synchronous in the protocol, so the fleet's names are a cache,
refreshed by every ``status()`` and by ``refresh`` on the node's heartbeat.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from supervisor.agent.types import Workspace
from supervisor.api import SupervisorAPI, SupervisorError, UnknownWorkflow
from supervisor.bus import Subscription
from supervisor.diagnosis.types import EvidencePack, Verdict
from supervisor.events import EventRecord, WorkflowStatus
from supervisor.fleet.node import FleetNode
from supervisor.fleet.registry import NodeInfo

if TYPE_CHECKING:
    from supervisor.heal.store import Proposal


class FleetSupervisor:
    """``SupervisorAPI`` over this node's supervisor and the fleet's DB."""

    def __init__(self, local: SupervisorAPI, node: FleetNode) -> None:
        self.local = local
        self.node = node
        self._remote: dict[str, str] = {}  # workflow -> node, for the others' workflows

    @property
    def names(self) -> Sequence[str]:
        return [*self.local.names, *self._remote]

    async def refresh(self) -> None:
        await self.nodes_and_statuses()

    async def nodes(self) -> list[NodeInfo]:
        return (await self.nodes_and_statuses())[0]

    async def nodes_and_statuses(self) -> tuple[list[NodeInfo], list[WorkflowStatus]]:
        """Every node, and every workflow's status tagged with its node (local ones live)."""
        infos, published = await self.node.view()
        mine = set(self.local.names)
        self._remote = {s.name: node for node, s in published if s.name not in mine}
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
        owner = await self._where(name)
        if owner is None:
            return await getattr(self.local, verb)(name, **args)
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
        await self._here(name, "heal")
        return await self.local.fix(name, note)

    async def heal_apply(self, proposal: str, approver: str) -> Proposal:
        return await self.local.heal_apply(proposal, approver)

    async def heal_reject(self, proposal: str, approver: str) -> Proposal:
        return await self.local.heal_reject(proposal, approver)

    async def heal_rollback(self, proposal: str, approver: str) -> str:
        return await self.local.heal_rollback(proposal, approver)

    async def heal_patch(self, proposal: str) -> tuple[str, bytes]:
        return await self.local.heal_patch(proposal)

    def events(self) -> Subscription:
        """This node's events: every node turns its own into alerts in the shared outbox."""
        return self.local.events()
