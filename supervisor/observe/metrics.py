"""What ``GET /metrics`` says, in one ``CollectorRegistry`` per node (tests run several at once).

The numbers are kept here by the event loop and the observer's DB thread
(``supervisor.observe.observer.Observer``); the HTTP thread only renders them, so a scrape
never waits on the loop or on the control DB. Three kinds of source:

- **Statuses** (``acp_workflow_up``, ``_state``, ``_heartbeat_age_seconds``):
  a snapshot of this node's ``status()``, replaced whole every second and
  on every event; rendered by a collector, so a workflow that is no longer
  configured leaves no stale series behind.
- **Events** (``acp_workflow_restarts_total``, ``acp_incidents_total``):
  counters the loop increments as the supervisor publishes, from zero at
  each start of the node (Prometheus's ``rate`` and ``increase`` handle the
  reset). An incident is one outage, counted once, when its first crash or
  hang opens it (``kind`` is that cause): the later crashes of a crash loop
  are its restarts, not new incidents, and an incident still open across a
  restart of the node is not counted again.
- **The control DB** (``acp_alerts_pending``, a bot's only; ``acp_agent_cost_usd_total``,
  ``acp_agent_tokens_total``): read every couple of seconds off the loop.
  The spend is the control plane's own ledger (``supervisor.spend``: ``/why``,
  the bridge, heal; ``workflow`` empty, ``who`` the spender) and each
  workflow's own agents (their ``agent.cost_usd``, ``supervisor.spending``;
  ``who`` is "workflow").

``acp_alert_delivery_seconds`` is observed by the outbox when Telegram has
taken an alert: from its event's time to then.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import get_args

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric

from supervisor.events import Crashed, Event, Hung, ProcessState, Restarted, WorkflowStatus

STATES: tuple[ProcessState, ...] = get_args(ProcessState)
INCIDENT_KINDS = ("crash", "hang")
# The ledger's spenders, shown at 0 before their first call so ``increase`` sees that too.
SPENDERS = ("diagnosis", "bridge", "heal")
WORKFLOW = "workflow"  # the spender of a workflow's own agents (its agent.cost_usd)
# Seconds from an alert's event to Telegram taking it: normally under a second; an outage
# of Telegram or of the bot makes it minutes or hours.
DELIVERY_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)


@dataclass(frozen=True, slots=True)
class WorkflowSample:
    """One workflow as ``acp_workflow_*`` shows it."""

    workflow: str
    node: str
    state: ProcessState
    heartbeat_age: float | None

    @property
    def up(self) -> bool:
        """Its process runs and heartbeats (``running`` is exactly that state)."""
        return self.state == "running"


@dataclass(frozen=True, slots=True)
class Spend:
    """The ledger's totals for one spender, over every day it holds."""

    who: str
    cost_usd: float
    input_tokens: int
    output_tokens: int
    workflow: str = ""  # whose agents: "" for the control plane's own


def samples(statuses: Iterable[WorkflowStatus], node: str) -> tuple[WorkflowSample, ...]:
    """The statuses as samples; ``node`` labels those that name none (a single node)."""
    return tuple(
        WorkflowSample(status.name, status.node or node, status.state, status.heartbeat_age)
        for status in statuses
    )


class Metrics:
    """A node's metrics: counters fed by events, snapshots replaced whole, one registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.restarts = Counter(
            "acp_workflow_restarts",
            "Restarts of a workflow (after a crash or hang, by hand, on reload) since the process "
            "started.",
            ["workflow", "node"],
            registry=self.registry,
        )
        self.incidents = Counter(
            "acp_incidents",
            "Outages opened, by the crash or hang that opened them, since the process started.",
            ["workflow", "node", "kind"],
            registry=self.registry,
        )
        self.delivery = Histogram(
            "acp_alert_delivery_seconds",
            "Seconds from an alert's event to Telegram accepting its message.",
            buckets=DELIVERY_BUCKETS,
            registry=self.registry,
        )
        self._workflows: tuple[WorkflowSample, ...] = ()
        self._pending: int | None = None
        self._spend: tuple[Spend, ...] = ()
        self.registry.register(_Snapshots(self))

    # -- fed by the loop -------------------------------------------------------------------

    def known(self, workflows: Iterable[str], node: str) -> None:
        """Show the counters of ``workflows`` at 0 before their first event."""
        for workflow in workflows:
            self.restarts.labels(workflow, node)
            for kind in INCIDENT_KINDS:
                self.incidents.labels(workflow, node, kind)

    def count(self, event: Event, node: str) -> None:
        """Count what ``event`` says happened: a restart, or a new incident."""
        match event:
            case Restarted():
                self.restarts.labels(event.workflow, node).inc()
            case Crashed(failures=1) | Hung(failures=1):
                kind = "hang" if isinstance(event, Hung) else "crash"
                self.incidents.labels(event.workflow, node, kind).inc()
            case _:
                pass

    def show_workflows(self, workflows: tuple[WorkflowSample, ...]) -> None:
        self._workflows = workflows  # one reference swap: a scrape sees all or nothing

    def delivered(self, seconds: float) -> None:
        """An alert reached Telegram ``seconds`` after its event (never negative: clocks)."""
        self.delivery.observe(max(seconds, 0.0))

    # -- fed by the DB thread --------------------------------------------------------------

    def show_pending(self, pending: int) -> None:
        self._pending = pending

    def show_spend(self, spend: Sequence[Spend]) -> None:
        self._spend = tuple(spend)

    # -- read by the HTTP thread -----------------------------------------------------------

    def render(self) -> bytes:
        """The Prometheus text format of everything above."""
        return generate_latest(self.registry)

    def workflow_families(self) -> list[Metric]:
        up = GaugeMetricFamily(
            "acp_workflow_up",
            "1 while the workflow's process runs and heartbeats, else 0.",
            labels=["workflow", "node"],
        )
        state = GaugeMetricFamily(
            "acp_workflow_state",
            "1 for the workflow's current process state, 0 for the others.",
            labels=["workflow", "node", "state"],
        )
        age = GaugeMetricFamily(
            "acp_workflow_heartbeat_age_seconds",
            "Seconds since the workflow's last heartbeat (absent when it never wrote one).",
            labels=["workflow", "node"],
        )
        for sample in self._workflows:
            up.add_metric([sample.workflow, sample.node], 1.0 if sample.up else 0.0)
            for each in STATES:
                value = 1.0 if each == sample.state else 0.0
                state.add_metric([sample.workflow, sample.node, each], value)
            if sample.heartbeat_age is not None:
                age.add_metric([sample.workflow, sample.node], sample.heartbeat_age)
        return [up, state, age]

    def db_families(self) -> list[Metric]:
        families: list[Metric] = []
        if self._pending is not None:
            pending = GaugeMetricFamily(
                "acp_alerts_pending",
                "Rows of the outbox waiting to be sent (alerts and replies; muted ones not).",
            )
            pending.add_metric([], float(self._pending))
            families.append(pending)
        cost = CounterMetricFamily(
            "acp_agent_cost_usd",
            "USD spent on Claude: the control plane's own agents by spender, each workflow's.",
            labels=["workflow", "who"],
        )
        tokens = CounterMetricFamily(
            "acp_agent_tokens",
            "Tokens the control plane sent to and got from Claude (its spend ledger).",
            labels=["workflow", "who", "direction"],
        )
        for spend in _with_every_spender(self._spend):
            cost.add_metric([spend.workflow, spend.who], spend.cost_usd)
            tokens.add_metric([spend.workflow, spend.who, "input"], float(spend.input_tokens))
            tokens.add_metric([spend.workflow, spend.who, "output"], float(spend.output_tokens))
        return [*families, cost, tokens]


def _with_every_spender(spend: Sequence[Spend]) -> list[Spend]:
    known: Mapping[str, Spend] = {each.who: each for each in spend}
    return [*spend, *(Spend(who, 0.0, 0, 0) for who in SPENDERS if who not in known)]


class _Snapshots:
    """Renders the snapshots the loop and the DB thread leave in ``Metrics``."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterable[Metric]:
        yield from self._metrics.workflow_families()
        yield from self._metrics.db_families()
