"""A fleet node's loops in one process, on a Postgres database of the test's own.

The local supervisor is a stand-in with fixed workflows (the node only asks it
for names, statuses and events); what is under test is the node: it steps up
when the lease is free, steps down by itself when it cannot renew it in time
(before any other node may take over), and takes a Telegram update once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import pytest
import pytest_asyncio
import sqlalchemy as sa

from supervisor.bus import EventBus, Subscription
from supervisor.control import ControlDB
from supervisor.events import SpendSummary, WorkflowStatus
from supervisor.fleet import lease, requests
from supervisor.fleet.node import FleetNode
from supervisor.settings import FleetSettings
from tests.conditions import wait_until

pytestmark = pytest.mark.timeout(60)
FAILOVER = 3.0


class Workflows:
    """The little of a supervisor a node uses."""

    def __init__(self, *names: str) -> None:
        self.names = names
        self.bus = EventBus()

    async def status(self, name: str | None = None) -> list[WorkflowStatus]:
        return [WorkflowStatus(name=n, state="running", pid=7) for n in self.names]

    def events(self) -> Subscription:
        return self.bus.subscribe()


@pytest_asyncio.fixture
async def engine(postgres_url: str) -> AsyncIterator[sa.Engine]:
    ControlDB(postgres_url).close()  # the event log a joining node reads its start from
    engine = sa.create_engine(postgres_url)
    yield engine
    await asyncio.to_thread(engine.dispose)


def make_node(engine: sa.Engine, url: str, name: str = "a", *workflows: str) -> FleetNode:
    settings = FleetSettings(failover_seconds=FAILOVER, node_timeout_seconds=5)
    local: Any = Workflows(*workflows)
    return FleetNode(engine, url, name, settings, local, can_lead=True)


async def test_a_node_that_cannot_renew_steps_down_before_the_lease_lapses(
    engine: sa.Engine, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    node = make_node(engine, postgres_url, "a", "api")
    await node.join()
    await node.start()
    try:
        await asyncio.wait_for(node.leading.wait(), 10)

        def unreachable(*_: object) -> None:
            raise sa.exc.OperationalError("renew", {}, Exception("connection refused"))

        cut_at = time.monotonic()
        monkeypatch.setattr(lease, "hold", unreachable)
        await asyncio.wait_for(node.following.wait(), 10)
        stepped_down = time.monotonic() - cut_at
        # The last renewal that worked was sent at most one interval before the cut.
        assert stepped_down <= node.times.fence + node.times.interval
        assert node.times.fence < node.times.ttl  # so nobody else held it meanwhile
        with engine.connect() as conn:
            assert lease.holder(conn).node == "a"  # the lease itself was never renewed again
    finally:
        monkeypatch.undo()
        await node.leave()


async def test_a_second_node_waits_and_takes_over_after_a_clean_stop(
    engine: sa.Engine, postgres_url: str
) -> None:
    first, second = (
        make_node(engine, postgres_url, "a", "api"),
        make_node(engine, postgres_url, "b"),
    )
    took_over: list[str] = []

    async def told(previous: str) -> None:
        took_over.append(previous)

    second.on_takeover = told
    await first.join()
    await first.start()
    await asyncio.wait_for(first.leading.wait(), 10)
    await second.join()
    await second.start()
    try:
        await asyncio.sleep(FAILOVER / 2)
        assert not second.leading.is_set()
        await first.leave()  # releases the lease: no waiting for it to lapse
        await asyncio.wait_for(second.leading.wait(), FAILOVER)
        await wait_until(lambda: took_over == ["a"], 5)
    finally:
        await second.leave()


def request(update_id: int, *, replay: bool = False) -> requests.Request:
    return requests.Request(update_id, datetime.now(UTC), replay=replay)


async def test_an_update_is_taken_once_across_nodes(engine: sa.Engine, postgres_url: str) -> None:
    first, second = make_node(engine, postgres_url, "a"), make_node(engine, postgres_url, "b")
    await first.join()
    assert await first.take(request(41), "{}")
    assert not await second.take(request(41), "{}")
    assert await second.take(request(42), "{}")


class Restartable(Workflows):
    """A stand-in that counts the restarts it is asked for."""

    def __init__(self, *names: str) -> None:
        super().__init__(*names)
        self.restarts: list[str] = []

    async def restart(self, name: str) -> WorkflowStatus:
        self.restarts.append(name)
        await asyncio.sleep(0.2)  # long enough to be cut off in the middle of
        return WorkflowStatus(name=name, state="running", pid=8)


async def asked(node: FleetNode, handled: requests.Request, owner: str, name: str) -> Any:
    """``restart`` of ``name`` on ``owner``, as the chat request ``handled`` asks it."""
    token = requests.current.set(handled)
    try:
        return await node.call(owner, "restart", {"name": name})
    finally:
        requests.current.reset(token)


async def test_a_request_its_poller_died_handling_is_replayed_and_nothing_runs_twice(
    engine: sa.Engine, postgres_url: str
) -> None:
    """The poller took /restart (of a workflow elsewhere and of its own), then died; a new
    run replays the update: it gets the answers of what was done, and nothing is redone."""
    far, near = Restartable("far"), Restartable("near")
    settings = FleetSettings(failover_seconds=FAILOVER, node_timeout_seconds=30)
    owner = FleetNode(engine, postgres_url, "b", settings, far, can_lead=False)  # type: ignore[arg-type]
    poller = FleetNode(engine, postgres_url, "a", settings, near, can_lead=False)  # type: ignore[arg-type]
    for node in (owner, poller):
        await node.join()
        await node.start()
    try:
        first = request(7)
        assert await poller.take(first, '{"update_id": 7}')
        assert (await asked(poller, first, "b", "far")).pid == 8
        assert (await asked(poller, first, "a", "near")).pid == 8
        # ... and died before finishing the update. Its node's next run, the new poller:
        again = FleetNode(engine, postgres_url, "a", settings, near, can_lead=False)  # type: ignore[arg-type]
        [(update_id, payload, _)] = await again.replays()
        assert (update_id, payload) == (7, '{"update_id": 7}')
        assert await again.replays() == []  # claimed: handled by this run only
        replayed = request(7, replay=True)
        assert await again.take(replayed, payload)
        assert (await asked(again, replayed, "b", "far")).pid == 8
        assert (await asked(again, replayed, "a", "near")).pid == 8
        assert (far.restarts, near.restarts) == (["far"], ["near"])
        await again.finish(7)
        # A request handled to its end is never replayed; an unkeyed call runs each time.
        done = request(8)
        assert await again.take(done, "{}")
        await again.finish(8)
        assert await make_node(engine, postgres_url, "c").replays() == []
        await again.call("b", "restart", {"name": "far"})
        assert far.restarts == ["far", "far"]
    finally:
        for node in (poller, owner):
            await node.leave()


class Spending(Workflows):
    """A stand-in whose one workflow's agents spend without any event."""

    spent = 0.0

    async def status(self, name: str | None = None) -> list[WorkflowStatus]:
        spend = SpendSummary(today_usd=self.spent)
        return [WorkflowStatus(name=n, state="running", spend=spend) for n in self.names]


async def test_spend_that_moves_without_an_event_is_published(
    engine: sa.Engine, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """/cost and /status on the poller see another node's spend within seconds."""
    monkeypatch.setattr("supervisor.fleet.node.SPEND_PUBLISH_SECONDS", 0.05)
    local = Spending("api")
    settings = FleetSettings(failover_seconds=FAILOVER, node_timeout_seconds=60)
    node = FleetNode(engine, postgres_url, "a", settings, local, can_lead=True)  # type: ignore[arg-type]
    await node.join()
    await node.start()
    try:

        async def published() -> float | None:
            _, [(_, api)] = await node.view()
            return None if api.spend is None else api.spend.today_usd

        await until_published(published, 0.0)
        local.spent = 1.25  # no event comes with it
        await until_published(published, 1.25)
    finally:
        await node.leave()


async def until_published(read: Callable[[], Awaitable[object]], value: object) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while (seen := await read()) != value:
        assert loop.time() < deadline, f"published {seen!r}, not {value!r}"
        await asyncio.sleep(0.05)


async def test_a_follower_that_wrote_to_the_outbox_wakes_the_poller_at_once(
    engine: sa.Engine, postgres_url: str
) -> None:
    """Rows another node commits are delivered on its NOTIFY (the notifier's fallback poll is
    not part of this: without the NOTIFY nothing would wake it); the poller's own need none."""
    poller, follower = make_node(engine, postgres_url, "a"), make_node(engine, postgres_url, "b")
    woken: list[bool] = []
    poller.on_outbox = lambda: woken.append(True)
    follower.on_outbox = lambda: pytest.fail("a follower delivers nothing")
    await poller.join()
    await poller.start()
    await asyncio.wait_for(poller.leading.wait(), 10)
    await follower.join()
    await follower.start()
    try:
        for _ in range(3):  # a burst: one NOTIFY in flight, one more after it
            follower.outbox_written()
        await wait_until(lambda: bool(woken), 10)
        poller.outbox_written()  # its own rows: its worker was woken already
        await asyncio.sleep(0.5)
        assert len(woken) <= 2
    finally:
        await follower.leave()
        await poller.leave()
