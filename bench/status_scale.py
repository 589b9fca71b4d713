"""``/status`` of a big fleet: 1000 workflows over 5 nodes, from the command to its reply.

The path measured is the poller's: ``CommandRouter`` over ``FleetSupervisor``,
which reads the nodes and the statuses they published from Postgres (one
node's own 200 come from its local supervisor, here a stand-in answering at
once), decodes them and renders the overview page. Telegram's round trip is
not in it (``bench/chat_latency.py`` measures that). Goal: p99 < 300 ms.
Needs a Postgres server (``--url``, default the local one); makes and drops a
database of its own. Prints figures; asserts nothing.

    python bench/status_scale.py [--workflows 1000] [--nodes 5] [--samples 50]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
import uuid
from pathlib import Path

import sqlalchemy as sa

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bot.audit import CONSOLE, AuditLog  # noqa: E402
from bot.commands import CommandRouter  # noqa: E402
from bot.outbox import Notifier  # noqa: E402
from bot.transport import ChatTarget, ConsoleTransport  # noqa: E402
from supervisor.bus import EventBus, Subscription  # noqa: E402
from supervisor.control import ControlDB  # noqa: E402
from supervisor.events import ProcessState, WorkflowStatus  # noqa: E402
from supervisor.fleet import registry  # noqa: E402
from supervisor.fleet.node import FleetNode  # noqa: E402
from supervisor.fleet.registry import Identity  # noqa: E402
from supervisor.fleet.remote import FleetSupervisor  # noqa: E402
from supervisor.settings import FleetSettings  # noqa: E402

SERVER = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
GOAL_P99_MS = 300.0


def status(name: str, index: int) -> WorkflowStatus:
    state: ProcessState = "crashed" if index % 97 == 0 else "running"
    return WorkflowStatus(
        name=name, state=state, status="running", summary="step 4 of 9", heartbeat_age=1.0, pid=1
    )


class LocalStandIn:
    """This node's own workflows, answered at once (the real supervisor keeps them in memory)."""

    def __init__(self, names: list[str]) -> None:
        self.names = names
        self._bus = EventBus()

    async def status(self, name: str | None = None) -> list[WorkflowStatus]:
        return [status(n, i) for i, n in enumerate(self.names) if name in (None, n)]

    def events(self) -> Subscription:
        return self._bus.subscribe()


async def measure(url: str, workflows: int, nodes: int, samples: int) -> list[float]:
    per_node = workflows // nodes
    names = {n: [f"n{n}-job-{i:04d}" for i in range(per_node)] for n in range(nodes)}
    ControlDB(url).close()
    engine = sa.create_engine(url)
    local = LocalStandIn(names[0])
    node = FleetNode(engine, url, "node-0", FleetSettings(), local, can_lead=False)  # type: ignore[arg-type]
    await node.join()
    with engine.begin() as conn:
        for n in range(1, nodes):
            registry.join(conn, Identity(f"node-{n}", "bench", "host", n), names[n], timeout=60)
            registry.publish(
                conn, f"node-{n}", [(i, status(name, i)) for i, name in enumerate(names[n])]
            )
    api = FleetSupervisor(local, node)  # type: ignore[arg-type]
    notifier = Notifier(engine, ConsoleTransport(), ChatTarget(1))
    router = CommandRouter(api, notifier, AuditLog(engine))
    times: list[float] = []
    try:
        for _ in range(samples):
            began = time.perf_counter()
            reply = await router.handle("status", [], CONSOLE)
            times.append(time.perf_counter() - began)
        text = reply.messages[0].text
        print(f"reply: {len(reply.messages)} message, {len(text)} characters; first line:")
        print(f"  {text.splitlines()[0]}")
    finally:
        await notifier.stop()
        engine.dispose()
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=SERVER, help="a Postgres server to make a database on")
    parser.add_argument("--workflows", type=int, default=1000)
    parser.add_argument("--nodes", type=int, default=5)
    parser.add_argument("--samples", type=int, default=50)
    args = parser.parse_args()
    server = sa.engine.make_url(args.url)
    name = f"acp_bench_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        url = server.set(database=name).render_as_string(hide_password=False)
        times = asyncio.run(measure(url, args.workflows, args.nodes, args.samples))
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
    ms = sorted(t * 1000 for t in times)
    p99 = ms[min(len(ms) - 1, round(0.99 * (len(ms) - 1)))]
    print(
        f"/status, {args.workflows} workflows on {args.nodes} nodes, {len(ms)} samples: "
        f"p50 {statistics.median(ms):.0f} ms, p99 {p99:.0f} ms, max {ms[-1]:.0f} ms "
        f"(goal: p99 < {GOAL_P99_MS:.0f} ms)"
    )


if __name__ == "__main__":
    main()
