"""``METRICS_ADDR``: ``/metrics``, ``/healthz`` and ``/readyz``, fed without blocking the loop.

Three threads of work, each doing one thing:

- **the event loop** stamps ``Health.beat`` and snapshots this node's
  statuses every second, and counts each event the supervisor publishes
  (refreshing the snapshot with it, so a state change shows at once);
- **a DB thread** ("observe-db") probes that the control DB takes writes,
  counts the outbox's pending rows and totals the spend ledger, every
  ``DB_SAMPLE_SECONDS``, so a locked or unreachable DB never holds the loop;
- **the HTTP thread** (``supervisor.observe.server``) only renders what those
  two left.

The bot serves them (``python -m bot``), and so does a headless node
(``python -m supervisor run``), which has no outbox and so no
``acp_alerts_pending``. In a fleet each node shows its own workflows (their heartbeats are
known only there), labelled with its node; the outbox and the ledger are
shared, so every node shows the same pending count and spend: take ``max``
across nodes, not ``sum``.

A port that is taken is one error line, and the node goes on without these
endpoints: the workflows matter more than their dashboard, and Prometheus's
own ``up`` for the target says that the scrape fails.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable

import sqlalchemy as sa

from supervisor.api import SupervisorAPI
from supervisor.bus import Subscription
from supervisor.cancelling import cancel
from supervisor.observe.health import PROBE_STALE_SECONDS, DbProbe, Health
from supervisor.observe.metrics import WORKFLOW, Metrics, Spend, samples
from supervisor.observe.server import HttpEndpoint, parse_addr, plain, prometheus
from supervisor.spend import ledger
from supervisor.spending import totals

log = logging.getLogger("supervisor.observe")
TICK_SECONDS = 1.0
DB_SAMPLE_SECONDS = 2.0


def read_spend(engine: sa.Engine) -> list[Spend]:
    """The spend ledger's totals per spender, and each workflow's own agents' (``who`` is
    "workflow"), over every day they hold (blocking)."""
    query = sa.select(
        ledger.c.who,
        sa.func.sum(ledger.c.cost_usd),
        sa.func.sum(ledger.c.input_tokens),
        sa.func.sum(ledger.c.output_tokens),
    ).group_by(ledger.c.who)
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    own = [
        Spend(str(who), float(cost or 0), int(tokens_in or 0), int(tokens_out or 0))
        for who, cost, tokens_in, tokens_out in rows
    ]
    workflows = [
        Spend(WORKFLOW, usage.cost_usd, usage.input_tokens, usage.output_tokens, workflow=name)
        for name, usage in totals(engine).items()
    ]
    return own + workflows


class Observer:
    """The metrics and health endpoints of one node, from ``start`` to ``stop``."""

    def __init__(
        self,
        addr: str,
        supervisor: SupervisorAPI,
        engine: sa.Engine,
        url: str,
        node: str,
        *,
        pending: Callable[[], int] | None = None,
    ) -> None:
        """``supervisor``: this node's (its workflows, its events); ``url``: the control DB's;
        ``node``: the label of workflows whose status names none (a single node);
        ``pending``: how many outbox rows wait (blocking; the bot's, a headless node has
        none)."""
        self.addr = addr
        self._host, self._wanted_port = parse_addr(addr)
        self.metrics = Metrics()
        self.health = Health()
        self._supervisor = supervisor
        self._engine = engine
        self._probe = DbProbe(url, engine)
        self._pending = pending
        self._node = node
        self._endpoint: HttpEndpoint | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._db_thread: threading.Thread | None = None
        self._halt = threading.Event()
        self._sampling_failed = False

    @property
    def port(self) -> int | None:
        """The port it listens on (the one chosen for ``:0``); None when not serving."""
        return None if self._endpoint is None else self._endpoint.port

    async def start(self) -> None:
        """Listen (or log one line why not), then start feeding; call before the workflows
        start, so that every event is counted and ``/readyz`` says 503 until ``ready``."""
        subscription = self._supervisor.events()  # registered now: no event is missed
        routes = {
            "/metrics": prometheus(self.metrics.render),
            "/healthz": plain(self.health.healthz),
            "/readyz": plain(self.health.readyz),
        }
        try:
            self._endpoint = await asyncio.to_thread(
                HttpEndpoint, self._host, self._wanted_port, routes
            )
        except OSError as exc:
            subscription.close()
            log.error(
                "metrics: cannot listen on METRICS_ADDR=%s (%s); going on without /metrics, "
                "/healthz and /readyz",
                self.addr,
                exc.strerror or exc,
            )
            return
        log.info(
            "metrics: /metrics, /healthz and /readyz on %s:%d", self._host, self._endpoint.port
        )
        self.metrics.known(self._supervisor.names, self._node)
        self.health.beat()
        await self._sample_workflows()
        self._tasks = [
            asyncio.create_task(self._tick(), name="observe-tick"),
            asyncio.create_task(self._count(subscription), name="observe-events"),
        ]
        self._db_thread = threading.Thread(target=self._sample_db, name="observe-db", daemon=True)
        self._db_thread.start()

    def ready(self) -> None:
        """The workflows are started: ``/readyz`` says 200."""
        self.health.ready()

    def stopping(self) -> None:
        """The node is stopping: ``/readyz`` says 503 again."""
        self.health.ready(False)

    def delivered(self, seconds: float) -> None:
        """The outbox's hook: an alert reached Telegram ``seconds`` after its event."""
        self.metrics.delivered(seconds)

    async def stop(self) -> None:
        """Stop feeding and serving; the port is free when this returns."""
        self.stopping()
        await cancel(*self._tasks)
        self._tasks = []
        self._halt.set()
        if self._endpoint is not None:
            endpoint, self._endpoint = self._endpoint, None
            await asyncio.to_thread(endpoint.close)
        if self._db_thread is not None:
            # A probe in flight waits at most its lock timeout; a hung one is a daemon thread.
            await asyncio.to_thread(self._db_thread.join, PROBE_STALE_SECONDS)
            self._db_thread = None

    # -- the event loop --------------------------------------------------------------------

    async def _tick(self) -> None:
        while True:
            self.health.beat()
            await self._sample_workflows()
            await asyncio.sleep(TICK_SECONDS)

    async def _count(self, subscription: Subscription) -> None:
        try:
            async for event in subscription:
                self.metrics.count(event, self._node)
                await self._sample_workflows()
        finally:
            subscription.close()

    async def _sample_workflows(self) -> None:
        try:
            statuses = await self._supervisor.status()
        except Exception:  # a failed sample must not end the loop's beat
            if not self._sampling_failed:
                log.exception("metrics: cannot read the workflows' statuses")
            self._sampling_failed = True
            return
        self._sampling_failed = False
        self.metrics.show_workflows(samples(statuses, self._node))

    # -- the DB thread ---------------------------------------------------------------------

    def _sample_db(self) -> None:
        while True:
            self.health.probing()
            self.health.probed(self._probe())
            try:
                if self._pending is not None:
                    self.metrics.show_pending(self._pending())
                self.metrics.show_spend(read_spend(self._engine))
            except Exception as exc:  # the last values stay; the probe says what is wrong
                log.debug("metrics: cannot read the outbox or the spend ledger: %s", exc)
            if self._halt.wait(DB_SAMPLE_SECONDS):
                return
