"""The fleet's rules in Postgres itself: the lease, joining, down and back, the command queue.

Each test has a database of its own on the server ``TEST_POSTGRES_URL`` names
(skipped without one). Time is the server's: a lease or a node timeout of a
fraction of a second is waited out on the server's clock.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest
import sqlalchemy as sa

from supervisor import dbschema
from supervisor.api import SupervisorError
from supervisor.control import ControlDB
from supervisor.events import Started, WorkflowStatus
from supervisor.fleet import commands, lease, registry, tables
from supervisor.fleet.node import FleetNode
from supervisor.fleet.registry import FleetRefused, Identity
from supervisor.fleet.tables import FLEET_SCHEMA
from supervisor.heal.store import Proposal
from supervisor.heal.types import GateResult
from supervisor.settings import FleetSettings

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def engine(postgres_url: str) -> Iterator[sa.Engine]:
    ControlDB(postgres_url).close()  # the event log a joining node reads its start from
    engine = sa.create_engine(postgres_url)
    with engine.begin() as conn:
        dbschema.settle(conn, FLEET_SCHEMA)
    yield engine
    engine.dispose()


def me(node: str, instance: str = "run-1") -> Identity:
    return Identity(node, instance, "host", 1234)


def running(name: str) -> WorkflowStatus:
    return WorkflowStatus(name=name, state="running", pid=99)


def test_one_holder_at_a_time_and_a_lapsed_lease_passes_on(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        first = lease.hold(conn, "a", ttl=0.5)
    with engine.begin() as conn:
        assert lease.hold(conn, "b", ttl=0.5) is None  # a holds it
        renewed = lease.hold(conn, "a", ttl=0.5)
    assert first is not None
    assert renewed is not None
    assert renewed.term == first.term  # a renewal is the same term
    time.sleep(0.6)
    with engine.begin() as conn:
        taken = lease.hold(conn, "b", ttl=5)
        assert lease.holder(conn) == lease.Holder("b", taken.term if taken else -1, valid=True)
    assert taken is not None
    assert (taken.term, taken.taken_from) == (first.term + 1, "a")


def test_a_released_lease_is_taken_at_once(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        assert lease.hold(conn, "a", ttl=60) is not None
        lease.release(conn, "a")
    with engine.begin() as conn:
        taken = lease.hold(conn, "b", ttl=60)
    assert taken is not None
    assert taken.taken_from == "a"


def test_the_fence_comes_before_anyone_else_may_take_over() -> None:
    times = lease.LeaseTimes.for_failover(15)
    assert times.fence < times.ttl  # the holder stops before the lease lapses for others
    assert times.ttl + times.interval < 15  # a dead holder is replaced within the bound


def test_joining_refuses_a_live_copy_and_a_name_a_live_node_runs(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        registry.join(conn, me("a"), ["api", "etl"], timeout=60)
        registry.publish(conn, "a", [(0, running("api")), (1, running("etl"))])
    copy = Identity("a", "run-2", "another-host", 1)
    with engine.begin() as conn, pytest.raises(FleetRefused, match="node a is already running"):
        registry.join(conn, copy, ["api"], timeout=60)
    with engine.begin() as conn, pytest.raises(FleetRefused) as refused:
        registry.join(conn, me("b"), ["etl", "web"], timeout=60)
    assert str(refused.value) == (
        "workflow 'etl' is configured on node a and on node b; "
        "names must be unique across the fleet"
    )


def test_the_names_of_a_node_that_is_down_pass_on(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        registry.join(conn, me("a"), ["api"], timeout=0.3)
        registry.publish(conn, "a", [(0, running("api"))])
    time.sleep(0.4)
    with engine.begin() as conn:
        taken = registry.join(conn, me("b"), ["api"], timeout=0.3)
        assert registry.owner(conn, "api") == "b"
    assert taken == ["api (from a)"]


def test_down_and_back_are_each_said_once(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        registry.join(conn, me("a"), ["api"], timeout=0.3)
        registry.publish(conn, "a", [(0, running("api"))])
        registry.join(conn, me("b"), [], timeout=0.3)
        registry.leave(conn, me("b"))  # a clean stop is not "down"
    time.sleep(0.4)
    with engine.begin() as conn:
        [down] = registry.down_changes(conn, timeout=0.3)
        assert registry.down_changes(conn, timeout=0.3) == []
    assert (down.node, down.down, down.workflows) == ("a", True, 1)
    with engine.begin() as conn:
        assert registry.beat(conn, me("a"))
        assert not registry.beat(conn, me("a", "another run"))
        [back] = registry.down_changes(conn, timeout=0.3)
        assert registry.down_changes(conn, timeout=0.3) == []
    assert (back.node, back.down, back.since) == ("a", False, down.since)
    with engine.begin() as conn:
        nodes, published = registry.view(conn, timeout=60)
    assert [(n.node, n.alive, n.stopped) for n in nodes] == [("a", True, False), ("b", False, True)]
    assert published == [("a", running("api"))]


def test_a_command_is_claimed_once_answered_and_a_late_one_expires(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        first, _ = commands.submit(conn, "b", "tail", {"name": "api", "lines": 5})
        second, _ = commands.submit(conn, "b", "restart", {"name": "api"})
        commands.submit(conn, "c", "restart", {"name": "web"})
    # Two claimers at once: SKIP LOCKED gives each row to one of them.
    with engine.begin() as one, engine.begin() as two:
        claimed = commands.claim(one, "b")
        assert commands.claim(two, "b") == []
    assert [(c.id, c.verb, c.args) for c in claimed] == [
        (first, "tail", {"name": "api", "lines": 5}),
        (second, "restart", {"name": "api"}),
    ]
    with engine.begin() as conn:
        commands.finish(conn, first, commands.DONE, '{"value": ["a line"]}')
        commands.finish(conn, second, commands.FAILED, '{"error": "api is paused"}')
        assert commands.answer("tail", *commands.outcome(conn, first), "b") == ["a line"]
        with pytest.raises(SupervisorError, match="api is paused"):
            commands.answer("restart", *commands.outcome(conn, second), "b")
        late, _ = commands.submit(conn, "c", "stop", {"name": "web"})
        conn.execute(
            sa.update(tables.commands).values(
                created_at=sa.func.now() - sa.text("interval '2 minutes'")
            )
        )
    with engine.begin() as conn:
        assert commands.claim(conn, "c") == []  # too late: expired, not run
        with pytest.raises(SupervisorError, match="did not get to it in time"):
            commands.answer("stop", *commands.outcome(conn, late), "c")


def test_a_restarted_node_fails_what_its_previous_run_left_running(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        command, _ = commands.submit(conn, "b", "restart", {"name": "api"})
        commands.claim(conn, "b")
    with engine.begin() as conn:
        assert commands.abandon_running(conn, "b") == 1
        with pytest.raises(SupervisorError, match="node b restarted while running it"):
            commands.answer("restart", *commands.outcome(conn, command), "b")


def test_a_headless_node_is_listed_with_its_workflows_and_where_its_alerts_start(
    engine: sa.Engine, postgres_url: str
) -> None:
    control = ControlDB(postgres_url)
    try:
        before = control.record(Started(workflow="older", time=datetime.now(UTC), pid=1))
    finally:
        control.close()
    headless = Identity("gpu", "run-1", "host", 1, forwards=False)
    with engine.begin() as conn:
        registry.join(conn, me("a"), ["api"], timeout=60)
        registry.join(conn, headless, ["train", "eval"], timeout=60)
        assert registry.headless(conn) == [("gpu", before, ["train", "eval"])]
        # Known at once, before the node publishes: a command finds its node.
        assert registry.owner(conn, "eval") == "gpu"


def test_a_fix_and_its_patch_travel_whole_between_nodes() -> None:
    proposal = Proposal(
        id="p1",
        workflow="api",
        signature="KeyError@api.py:3",
        status="pending",
        created_at=1.5,
        base="a" * 40,
        branch="heal/api/1",
        worktree="/tmp/wt",
        diff="--- a/api.py\n+++ b/api.py\n",
        files=1,
        added=1,
        removed=1,
        gates=(GateResult("smoke", True, "alive at 2.0s"),),
        rationale=("read the right key",),
        cause="a wrong key",
        cost_usd=0.01,
    )
    for verb in ("fix", "heal_apply", "heal_reject"):
        codec = commands.VERBS[verb]
        assert codec.decode(json.loads(json.dumps(codec.encode(proposal)))) == proposal
    patch = commands.VERBS["heal_patch"]
    sent = ("api-p1.patch", b"\x00binary\xff")
    assert patch.decode(json.loads(json.dumps(patch.encode(sent)))) == sent
    assert commands.VERBS["fix"].wait_seconds > commands.VERBS["restart"].wait_seconds


def test_a_killed_run_on_the_same_host_does_not_hold_its_node_back(engine: sa.Engine) -> None:
    ended = subprocess.Popen(["true"])
    ended.wait()  # its pid is gone now
    killed = Identity("a", "run-1", "host", ended.pid)
    with engine.begin() as conn:
        registry.join(conn, killed, ["api"], timeout=60)
    with engine.begin() as conn:
        registry.join(conn, me("a", "run-2"), ["api"], timeout=60)  # not refused
        assert registry.beat(conn, me("a", "run-2"))


def test_a_node_back_before_the_poller_looked_is_still_reported_down(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        registry.join(conn, me("a"), ["api"], timeout=0.3)
    time.sleep(0.4)  # silent past the timeout, and nobody looked
    with engine.begin() as conn:
        registry.join(conn, me("a", "run-2"), ["api"], timeout=0.3)
    with engine.begin() as conn:
        [change] = registry.down_changes(conn, timeout=0.3)
        assert registry.down_changes(conn, timeout=0.3) == []
    assert (change.node, change.down, change.said) == ("a", False, False)


def test_a_command_asked_again_by_its_request_is_the_same_command(engine: sa.Engine) -> None:
    """A request handled again after a failover finds the command its first handling gave."""
    with engine.begin() as conn:
        first, new = commands.submit(conn, "b", "restart", {"name": "api"}, request="7:1")
        assert new
        assert commands.submit(conn, "b", "restart", {"name": "api"}, request="7:1") == (
            first,
            False,
        )
        # Asked something else this time (the handler took another turn): not that row.
        other, new = commands.submit(conn, "b", "stop", {"name": "api"}, request="7:1")
        assert new
        assert other != first
        # Recorded as run by the asker itself: never in the queue for claiming.
        mine, _ = commands.submit(
            conn, "a", "pause", {"name": "web"}, request="8:1", state=commands.RUNNING
        )
        assert commands.claim(conn, "a") == []
        assert commands.outcome(conn, mine) == (commands.RUNNING, None)
    with engine.begin() as conn:
        assert [c.id for c in commands.claim(conn, "b")] == [first, other]


def first_release_fleet_tables(engine: sa.Engine) -> None:
    """The fleet's tables as their first release made them: no version row, no request keys."""
    tables.metadata.create_all(engine)  # today's, less what version 2 added
    with engine.begin() as conn:
        for table, column in [
            ("fleet_updates", "instance"),
            ("fleet_updates", "payload"),
            ("fleet_updates", "finished_at"),
            ("fleet_commands", "request"),  # its unique index goes with it
        ]:
            conn.execute(sa.text(f"ALTER TABLE {table} DROP COLUMN {column}"))
        conn.execute(sa.text("INSERT INTO fleet_updates VALUES (41, 'a', now())"))


def test_fleet_tables_of_the_first_release_are_upgraded_in_place(postgres_url: str) -> None:
    ControlDB(postgres_url).close()
    engine = sa.create_engine(postgres_url)
    try:
        first_release_fleet_tables(engine)
        with engine.begin() as conn:
            dbschema.settle(conn, FLEET_SCHEMA)
        with engine.begin() as conn:
            dbschema.settle(conn, FLEET_SCHEMA)  # at its version now: nothing to do
            version = conn.execute(
                sa.text("SELECT value FROM supervisor_meta WHERE key = 'fleet_schema_version'")
            ).scalar()
            assert version == str(FLEET_SCHEMA.version)
            kept = conn.execute(sa.select(tables.updates)).one()
            assert (kept.update_id, kept.node, kept.payload) == (41, "a", None)
            commands.submit(conn, "b", "restart", {"name": "api"}, request="9:1")
            assert commands.submit(conn, "b", "restart", {"name": "api"}, request="9:1")[1] is False
    finally:
        engine.dispose()


async def test_fleet_tables_from_a_newer_release_refuse_the_node(
    engine: sa.Engine, postgres_url: str
) -> None:
    with engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE supervisor_meta SET value = '99' WHERE key = 'fleet_schema_version'")
        )
    local: Any = SimpleNamespace(names=())
    node = FleetNode(engine, postgres_url, "a", FleetSettings(), local, can_lead=False)
    with pytest.raises(FleetRefused, match="fleet tables schema version 99 is newer than this"):
        await node.join()
