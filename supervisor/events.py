"""Typed events the supervisor publishes, and the status snapshot it reports.

Events are small frozen values named in the product's words; consumers
``match`` on them. ``kind`` is the stable name used in JSON lines and in the
control DB; ``detail`` is one human-readable line. ``incident`` ties together
the events of one outage (crash or hang, the restarts that follow, a give-up
or a recovery) so a consumer can update one message per incident.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import ClassVar, Literal

from supervisor.diagnosis.types import Verdict

ProcessState = Literal[
    "starting",  # spawned, no heartbeat yet
    "running",  # process alive and heartbeating
    "hung",  # alive but silent past its threshold; being ended
    "backoff",  # exited or hung, waiting to be restarted
    "stopped",  # stopped by a user, or never started
    "paused",  # paused by a user; survives supervisor restarts
    "finished",  # exited 0
    "crashed",  # exited non-zero or by a signal, and will not be restarted
    "gave_up",  # too many restarts; waits for a manual start
]
# The one status vocabulary (chat, CLI, README): an icon and a word per process state.
STATE_LABELS: Mapping[ProcessState, tuple[str, str]] = {
    "starting": ("🟡", "starting"),
    "running": ("🟢", "running"),
    "hung": ("⏳", "hung"),
    "backoff": ("🔁", "backing off"),
    "crashed": ("💥", "crashed"),
    "gave_up": ("🛑", "gave up"),
    "paused": ("⏸", "paused"),
    "stopped": ("⏹", "stopped"),
    "finished": ("🏁", "finished"),
}
# A process exists: its own supervisor.status and heartbeat mean something.
LIVE_STATES: frozenset[ProcessState] = frozenset({"starting", "running", "hung"})


def own_word(state: ProcessState, status: str | None) -> str | None:
    """What the workflow says of itself (``supervisor.status``), where it is worth showing:
    beside a live process only, and not when it merely repeats "running"."""
    return status if state in LIVE_STATES and status not in (None, "running") else None


IncidentCause = Literal["crash", "hang"]
RestartReason = Literal["crash", "hang", "exit", "manual", "reload"]


@dataclass(frozen=True, slots=True)
class WorkflowStatus:
    """Everything known about one workflow at one moment (process and state table)."""

    name: str
    state: ProcessState
    status: str | None = None  # supervisor.status from the state table
    summary: str | None = None
    heartbeat: datetime | None = None
    heartbeat_age: float | None = None  # seconds
    last_error: str | None = None
    paused: bool = False
    pid: int | None = None
    started_at: datetime | None = None  # for uptime
    restarts: int = 0  # attempts in the current incident
    max_restarts: int = 0
    next_restart_at: datetime | None = None  # set while backing off
    exit_code: int | None = None  # last exit, if any
    db_problem: str | None = None  # missing, locked, corrupt or schema-less state DB
    node: str | None = None  # the fleet node that runs it; None on a single node
    spend: SpendSummary | None = None  # its agents' spend (None: not known here)


@dataclass(frozen=True, slots=True)
class SpendSummary:
    """What a workflow's agents spent (its ``agent.cost_usd``) by local day (supervisor.days)."""

    today_usd: float = 0.0
    week_usd: float = 0.0  # today and the six days before
    run_usd: float | None = None  # the current run's, as it says; None: it records none
    budget_usd: float | None = None  # its budget_usd_per_day in force (raised ×2 or the TOML's)
    allowance_usd: float | None = None  # what today may reach before a pause: budget + grants
    paused_by_budget: bool = False


@dataclass(frozen=True, slots=True)
class OwnSpend:
    """What the control plane's own agents (/why, the bridge, heal) spent today, and their cap
    (``AGENT_MAX_USD_PER_DAY``)."""

    today_usd: float
    cap_usd: float


@dataclass(frozen=True, slots=True)
class EventRecord:
    """An event as stored in the control DB's log: enough to list a workflow's history."""

    time: datetime
    workflow: str
    kind: str
    detail: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """Base of every event: which workflow, and when (aware UTC)."""

    kind: ClassVar[str] = "event"
    workflow: str
    time: datetime
    id: int | None = None  # its row in the control DB's event log, once recorded

    @property
    def detail(self) -> str:
        return ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Started(Event):
    kind: ClassVar[str] = "started"
    pid: int

    @property
    def detail(self) -> str:
        return f"pid {self.pid}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Stopped(Event):
    """Stopped on request (a user, or the supervisor shutting down)."""

    kind: ClassVar[str] = "stopped"
    reason: str = "requested"

    @property
    def detail(self) -> str:
        return self.reason


@dataclass(frozen=True, slots=True, kw_only=True)
class Finished(Event):
    """Exited 0. ``note`` says so when the state still claimed to be running."""

    kind: ClassVar[str] = "finished"
    summary: str | None = None
    note: str | None = None

    @property
    def detail(self) -> str:
        return "; ".join(part for part in (self.summary, self.note) if part) or "exit 0"


@dataclass(frozen=True, slots=True, kw_only=True)
class _Incident(Event):
    """An outage step: what the restart policy decided, and where it stands."""

    incident: str
    attempt: int  # restarts made so far in this incident (0 before the first)
    max_attempts: int
    will_restart: bool
    next_restart_in: float | None = None  # seconds, when a restart is scheduled
    failures: int = 1  # crashes and hangs in this incident so far, this one included
    gives_up: bool = False  # the attempts are used up: a give-up follows
    restart: str = "on-failure"  # the workflow's restart policy, to say why it stays down
    summary: str | None = None  # what it was doing (supervisor.summary)
    log_tail: tuple[str, ...] = ()  # its own last output lines, oldest first


@dataclass(frozen=True, slots=True, kw_only=True)
class Crashed(_Incident):
    kind: ClassVar[str] = "crashed"
    exit_code: int | None = None
    signal: str | None = None  # e.g. "SIGKILL"
    os_error: str | None = None  # the command could not be started at all

    @property
    def detail(self) -> str:
        if self.os_error:
            return f"could not start: {self.os_error}"
        if self.signal:
            return f"killed by {self.signal}"
        return f"exit code {self.exit_code}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Hung(_Incident):
    kind: ClassVar[str] = "hung"
    heartbeat_age: float | None  # None when no heartbeat was ever written
    threshold: float

    @property
    def detail(self) -> str:
        if self.heartbeat_age is None:
            return f"no heartbeat within {self.threshold:.0f}s"
        return f"no heartbeat for {self.heartbeat_age:.0f}s (threshold {self.threshold:.0f}s)"


@dataclass(frozen=True, slots=True, kw_only=True)
class Restarted(Event):
    kind: ClassVar[str] = "restarted"
    reason: RestartReason
    attempt: int
    max_attempts: int
    incident: str | None = None  # None for manual restarts and reloads
    pid: int | None = None
    # Where the incident stands, so its message can be shown without earlier events.
    cause: IncidentCause | None = None
    failures: int = 0
    last_detail: str = ""

    @property
    def detail(self) -> str:
        pid = f" as pid {self.pid}" if self.pid else ""
        if self.incident is None:
            return f"{self.reason} restart{pid}"
        return f"after {self.reason}, attempt {self.attempt}/{self.max_attempts}{pid}"


@dataclass(frozen=True, slots=True, kw_only=True)
class GaveUp(Event):
    kind: ClassVar[str] = "gave_up"
    incident: str
    attempts: int
    cause: IncidentCause
    last_detail: str
    failures: int = 0
    max_attempts: int = 0  # max_restart_attempts: the limit that was reached

    @property
    def detail(self) -> str:
        return f"gave up after {self.attempts} restarts; last: {self.last_detail}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Diagnosed(Event):
    """The diagnosis of a give-up, made unasked for a workflow with ``diagnose = "auto"``.

    It follows its ``GaveUp`` (same ``incident``) by the time a diagnosis takes,
    so the person reading the give-up on a phone also reads why.
    """

    kind: ClassVar[str] = "diagnosed"
    incident: str
    verdict: Verdict

    @property
    def detail(self) -> str:
        return f"{self.verdict.category}: {self.verdict.cause}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Recovered(Event):
    """A workflow that had an incident is healthy again (a fresh heartbeat)."""

    kind: ClassVar[str] = "recovered"
    incident: str
    down_seconds: float
    cause: IncidentCause = "crash"
    failures: int = 1
    last_detail: str = ""

    @property
    def detail(self) -> str:
        return f"healthy again after {self.down_seconds:.0f}s"


@dataclass(frozen=True, slots=True, kw_only=True)
class IncidentClosed(Event):
    """A person ended an open incident by hand (stop, start, restart or pause)."""

    kind: ClassVar[str] = "incident_closed"
    incident: str
    how: Literal["stopped", "started", "restarted", "paused", "resumed"]
    cause: IncidentCause
    failures: int
    last_detail: str

    @property
    def detail(self) -> str:
        return f"{self.how} by hand after {self.failures} failures; last: {self.last_detail}"


@dataclass(frozen=True, slots=True, kw_only=True)
class StateUnreadable(Event):
    """The workflow's state database has stayed unreadable: its health is unknown."""

    kind: ClassVar[str] = "state_unreadable"
    reason: str

    @property
    def detail(self) -> str:
        return self.reason


@dataclass(frozen=True, slots=True, kw_only=True)
class StateReadable(Event):
    """The state database that was unreadable can be read again."""

    kind: ClassVar[str] = "state_readable"
    unreadable_seconds: float

    @property
    def detail(self) -> str:
        return f"readable again after {self.unreadable_seconds:.0f}s"


@dataclass(frozen=True, slots=True, kw_only=True)
class ErrorReported(Event):
    """``supervisor.last_error`` changed to a new text."""

    kind: ClassVar[str] = "error"
    text: str
    repeat: int = 1  # how many times this text was reported in the last 24 hours

    @property
    def detail(self) -> str:
        return self.text


@dataclass(frozen=True, slots=True, kw_only=True)
class StatusChanged(Event):
    """``supervisor.status`` changed."""

    kind: ClassVar[str] = "status"
    old: str | None
    new: str
    summary: str | None = None

    @property
    def detail(self) -> str:
        return f"{self.old or '-'} -> {self.new}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Paused(Event):
    kind: ClassVar[str] = "paused"


@dataclass(frozen=True, slots=True, kw_only=True)
class Resumed(Event):
    kind: ClassVar[str] = "resumed"


@dataclass(frozen=True, slots=True, kw_only=True)
class BudgetWarning(Event):
    """Today's spend passed 80% of the workflow's budget_usd_per_day (once a day)."""

    kind: ClassVar[str] = "budget_warning"
    spent_usd: float
    budget_usd: float

    @property
    def detail(self) -> str:
        return f"${self.spent_usd:.2f} of ${self.budget_usd:.2f} today"


@dataclass(frozen=True, slots=True, kw_only=True)
class BudgetPaused(Event):
    """Today's spend reached what the budget allows: paused until ``resumes_at`` (the next
    budget day) or a tap; its run resumes from its checkpoint then."""

    kind: ClassVar[str] = "budget_paused"
    spent_usd: float
    budget_usd: float
    allowance_usd: float  # the budget and what [Resume once] added today
    resumes_at: datetime

    @property
    def detail(self) -> str:
        return f"${self.spent_usd:.2f} spent today, budget ${self.budget_usd:.2f}"


BudgetResume = Literal["once", "raised", "new_day"]


@dataclass(frozen=True, slots=True, kw_only=True)
class BudgetResumed(Event):
    """Resumed after a budget pause: once more today (``allowance_usd``), with the budget
    doubled, or because a new budget day began."""

    kind: ClassVar[str] = "budget_resumed"
    how: BudgetResume
    budget_usd: float
    allowance_usd: float
    paused_at: datetime | None = None  # the pause it ends (None: it was not paused)
    by: str | None = None  # who tapped; None for a new day

    @property
    def detail(self) -> str:
        who = f" by {self.by}" if self.by else ""
        return f"{self.how}{who}: may spend ${self.allowance_usd:.2f} today"


@dataclass(frozen=True, slots=True, kw_only=True)
class Reloaded(Event):
    """A watched script changed; the workflow was restarted with it."""

    kind: ClassVar[str] = "reloaded"
    path: str

    @property
    def detail(self) -> str:
        return self.path


@dataclass(frozen=True, slots=True, kw_only=True)
class HealProposed(Event):
    """A fix made in a heal worktree, with what its gates said; it waits for Apply.

    ``diff`` is clipped for the log (the whole patch stays with the proposal).
    ``applying``: ``heal = "auto"`` applies it without a tap (every gate passed).
    """

    kind: ClassVar[str] = "heal_proposed"
    proposal: str
    files: int
    added: int
    removed: int
    gates: tuple[tuple[str, bool, str], ...]  # (name, passed, detail)
    rationale: tuple[str, ...]
    cost_usd: float
    diff: str
    applying: bool = False

    @property
    def ready(self) -> bool:
        return all(passed for _name, passed, _detail in self.gates)

    @property
    def detail(self) -> str:
        state = "ready" if self.ready else "refused by a gate"
        return (
            f"proposal {self.proposal}: {self.files} files +{self.added}/-{self.removed}, {state}"
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class HealApplied(Event):
    """A proposal committed, fast-forwarded onto the live tree and restarted; on probation."""

    kind: ClassVar[str] = "heal_applied"
    proposal: str
    commit: str
    previous: str
    approver: str
    probation_seconds: float

    @property
    def detail(self) -> str:
        return f"proposal {self.proposal} applied as {self.commit[:10]} by {self.approver}"


@dataclass(frozen=True, slots=True, kw_only=True)
class HealRolledBack(Event):
    """An applied proposal reverted (its failure came back, or a person asked), and restarted."""

    kind: ClassVar[str] = "heal_rolled_back"
    proposal: str
    commit: str  # the revert
    reason: str

    @property
    def detail(self) -> str:
        return f"proposal {self.proposal} rolled back: {self.reason}"


EVENT_TYPES: tuple[type[Event], ...] = (
    Started,
    Stopped,
    Finished,
    Crashed,
    Hung,
    Restarted,
    GaveUp,
    Diagnosed,
    Recovered,
    IncidentClosed,
    StateUnreadable,
    StateReadable,
    ErrorReported,
    StatusChanged,
    Paused,
    Resumed,
    BudgetWarning,
    BudgetPaused,
    BudgetResumed,
    Reloaded,
    HealProposed,
    HealApplied,
    HealRolledBack,
)
