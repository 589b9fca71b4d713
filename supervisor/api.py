"""What the bot may ask of the supervisor: the whole seam between them.

The bot depends on this protocol, never on processes or workflow databases,
so its command layer can be read without knowing how processes are run.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

from supervisor.agent.types import Workspace
from supervisor.bus import Subscription
from supervisor.diagnosis.types import EvidencePack, Verdict
from supervisor.events import EventRecord, OwnSpend, WorkflowStatus

if TYPE_CHECKING:
    from supervisor.agentsettings import AgentSettings
    from supervisor.fleet.registry import NodeInfo
    from supervisor.heal.store import Proposal
    from supervisor.secrets import Redactor
    from supervisor.settings import SupervisorSettings


class SupervisorError(Exception):
    """A request the supervisor refuses, with a message fit to show a user."""


class UnknownWorkflow(SupervisorError):
    """No workflow of that name; the message lists the known ones."""

    def __init__(self, name: str, known: Sequence[str]) -> None:
        self.name = name
        self.known = tuple(known)
        listed = ", ".join(self.known) or "none configured"
        super().__init__(f"unknown workflow {name!r}; known: {listed}")


class SupervisorAPI(Protocol):
    """Control and observation of the configured workflows."""

    @property
    def names(self) -> Sequence[str]:
        """The configured workflow names, in configuration order."""
        ...

    async def start(self, name: str) -> WorkflowStatus: ...

    async def stop(self, name: str) -> WorkflowStatus: ...

    async def restart(self, name: str) -> WorkflowStatus: ...

    async def pause(self, name: str) -> WorkflowStatus: ...

    async def resume(self, name: str) -> WorkflowStatus: ...

    async def budget_resume(self, name: str, approver: str) -> WorkflowStatus:
        """[Resume once]: its budget paused it; it may spend one more budget's worth today."""
        ...

    async def budget_raise(self, name: str, approver: str) -> WorkflowStatus:
        """[Raise ×2]: double its budget_usd_per_day in force; resume it if that paused it."""
        ...

    async def own_spend(self) -> OwnSpend:
        """What the control plane's own agents (/why, the bridge, heal) spent today."""
        ...

    async def status(self, name: str | None = None) -> list[WorkflowStatus]:
        """Every workflow (``name`` None) or just that one, as a one-item list."""
        ...

    async def tail(self, name: str, lines: int) -> list[str]:
        """The last ``lines`` lines of the workflow's log, oldest first."""
        ...

    async def log_bytes(self, name: str, limit: int) -> bytes:
        """The last ``limit`` bytes of the workflow's log, starting at a line boundary."""
        ...

    async def why(self, name: str) -> Verdict:
        """Why the workflow failed: its evidence, the rules, then Claude when configured."""
        ...

    async def evidence(self, name: str) -> EvidencePack:
        """The evidence ``why`` answers from, gathered and redacted in code."""
        ...

    async def workspace(self, name: str) -> Workspace:
        """Where an agent may work on the workflow (its ``cwd``), and its secrets to redact."""
        ...

    async def fix(self, name: str, note: str | None = None) -> Proposal:
        """Propose a fix for the workflow's failure (heal), its gates run; published too."""
        ...

    async def heal_apply(self, proposal: str, approver: str) -> Proposal:
        """Apply a proposal and restart the workflow; its probation begins."""
        ...

    async def heal_reject(self, proposal: str, approver: str) -> Proposal: ...

    async def heal_rollback(self, proposal: str, approver: str) -> str:
        """Revert an applied proposal and restart; the revert commit."""
        ...

    async def heal_patch(self, proposal: str) -> tuple[str, bytes]:
        """A proposal's whole diff: file name and bytes."""
        ...

    async def recent_events(self, name: str, limit: int = 10) -> list[EventRecord]:
        """The latest events of one workflow from the control DB, newest first."""
        ...

    def events(self) -> Subscription:
        """Subscribe to every event from now on (registered at call time)."""
        ...

    async def nodes(self) -> list[NodeInfo]:
        """The fleet's nodes with their liveness; empty on a single node."""
        ...


class HostSupervisor(SupervisorAPI, Protocol):
    """This host's supervisor as the program that runs it sees it: the API, its lifecycle
    and its settings. The bot's wiring (``bot.service``) needs this much; every other
    part of the bot only ``SupervisorAPI``."""

    settings: SupervisorSettings
    agent_settings: AgentSettings
    redactor: Redactor
    reaped: tuple[str, ...]  # workflows a killed run left behind, ended at this start

    async def open(self) -> object:
        """Open the control DB (the event log exists once this returns)."""
        ...

    async def startup(self) -> None: ...

    async def shutdown(self) -> None: ...
