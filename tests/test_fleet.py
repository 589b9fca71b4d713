"""Three ``python -m bot`` nodes and a headless one on one Postgres and one stand-in Bot API.

Each node has its own data dir and workflow; the stand-in answers a second
concurrent ``getUpdates`` with 409 as Telegram does, so ``conflicts`` and
``peak_polls`` prove there was never more than one poller. The scenario runs
in one test because starting three bots is the expensive part: steady state,
``/status`` by node, a command, a tail, the log file and /why across nodes, an alert delivered
once, a start refused for a name clash and for a second copy of a node, then
kill -9 of the poller while a command it took is running: another node
takes over and says so and answers that command once, the dead node is
reported down, a command for it is refused with when, and its return is said.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import psutil
import pytest
import sqlalchemy as sa

from tests.bot_harness import (
    ALERT_CHAT,
    BOT_START_SECONDS,
    COMMAND_CHAT,
    TOKEN,
    USER,
    order,
    process_env,
    worker_table,
)
from tests.conditions import wait_until
from tests.fakes.botapi import FakeBotAPI, SentMessage
from tests.supervisor_harness import write_toml

pytestmark = pytest.mark.timeout(180)

FAILOVER = 6.0
NODE_TIMEOUT = 8.0
SLACK = 6.0  # a busy 2-core machine under pytest -n 4; bench/fleet.py measures the real figure
NODES = ("node-a", "node-b", "node-c")


@pytest.fixture
def fake() -> Iterator[FakeBotAPI]:
    with FakeBotAPI(TOKEN) as server:
        yield server


class Fleet:
    """The nodes' processes, by name, and the test's view of their shared DB."""

    def __init__(self, tmp_path: Path, fake: FakeBotAPI, url: str) -> None:
        self.tmp_path, self.fake, self.url = tmp_path, fake, url
        self.procs: dict[str, subprocess.Popen[str]] = {}
        self.engine = sa.create_engine(url)
        self.strays: set[int] = set()  # workflows of a killed node, ended at the end

    def env(self, node: str, workflow: str) -> dict[str, str]:
        home = self.tmp_path / node
        home.mkdir(exist_ok=True)
        toml = write_toml(
            home / "fleet.toml", [{"db": f"{workflow}.db", **worker_table(home, workflow)}]
        )
        return process_env(
            self.fake,
            home,
            SUPERVISOR_CONFIG=str(toml),
            SUPERVISOR_DB_URL=self.url,
            SUPERVISOR_NODE=node,
            FLEET_FAILOVER_SECONDS=str(FAILOVER),
            FLEET_NODE_TIMEOUT_SECONDS=str(NODE_TIMEOUT),
            LOG_LEVEL="INFO",
        )

    def start(self, node: str, workflow: str, program: str = "bot") -> subprocess.Popen[str]:
        """``program``: ``bot`` (``python -m bot``) or ``supervisor`` (headless, ``run``)."""
        argv = ["-m", "bot"] if program == "bot" else ["-m", "supervisor", "run"]
        proc = subprocess.Popen(
            [sys.executable, *argv],
            env=self.env(node, workflow),
            stdout=subprocess.DEVNULL,
            stderr=open(self.tmp_path / f"{node}.log", "a", encoding="utf-8"),  # noqa: SIM115
            text=True,
        )
        self.procs[node] = proc
        return proc

    def run_refused(self, node: str, workflow: str, data: str) -> subprocess.CompletedProcess[str]:
        env = self.env(node, workflow) | {"SUPERVISOR_DATA_DIR": str(self.tmp_path / data)}
        return subprocess.run(
            [sys.executable, "-m", "bot"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def poller(self) -> str | None:
        with self.engine.connect() as conn:
            return conn.execute(
                sa.text("SELECT node FROM fleet_lease WHERE expires_at > now()")
            ).scalar()

    def count(self, kind: str, workflow: str) -> int:
        """Events of ``kind`` the workflow's node recorded for it."""
        with self.engine.connect() as conn:
            return int(
                conn.execute(
                    sa.text(
                        "SELECT count(*) FROM supervisor_events WHERE kind = :k AND workflow = :w"
                    ),
                    {"k": kind, "w": workflow},
                ).scalar_one()
            )

    def command_running(self, verb: str, workflow: str) -> bool:
        """A command ``verb`` for the workflow is being run by its node."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.text("SELECT args FROM fleet_commands WHERE verb = :v AND state = 'running'"),
                {"v": verb},
            ).scalars()
            return any(json.loads(args).get("name") == workflow for args in rows)

    def kill(self, node: str) -> None:
        proc = self.procs.pop(node)
        self.strays.update(child.pid for child in psutil.Process(proc.pid).children(recursive=True))
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)

    def close(self) -> None:
        for proc in self.procs.values():
            proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
        for pid in self.strays:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
        self.engine.dispose()


@asynccontextmanager
async def fleet_of(tmp_path: Path, fake: FakeBotAPI, url: str) -> AsyncIterator[Fleet]:
    fleet = Fleet(tmp_path, fake, url)
    try:
        yield fleet
    finally:
        await asyncio.to_thread(fleet.close)


def alert(text: str) -> Callable[[SentMessage], bool]:
    return lambda m: m.chat_id == ALERT_CHAT and text in m.text


async def command(fake: FakeBotAPI, text: str, within: float = 30) -> SentMessage:
    seen = {m.message_id for m in fake.sent_matching()}
    fake.add_message(text, COMMAND_CHAT, USER)
    [reply] = await fake.wait_for_sent(
        lambda m: m.chat_id == COMMAND_CHAT and m.message_id not in seen, 1, within
    )
    return reply


async def test_nodes_one_poller_commands_cross_and_a_dead_poller_is_replaced(
    tmp_path: Path, fake: FakeBotAPI, postgres_url: str
) -> None:
    async with fleet_of(tmp_path, fake, postgres_url) as fleet:
        for node in NODES:
            fleet.start(node, f"w{node[-1]}")
        fleet.start("node-h", "wh", program="supervisor")  # headless: never the poller
        for node in NODES:
            await fake.wait_for_sent(
                alert(f"bot up on node {node}: w{node[-1]}"), 1, BOT_START_SECONDS
            )
        # Steady state: one poller, never two polls at once.
        await asyncio.sleep(2 * FAILOVER / 10 * 3)
        first = fleet.poller()
        assert first in NODES
        assert (fake.conflicts, fake.peak_polls) == (0, 1)

        # Commands reach the node that runs the workflow, whichever node polls.
        other = next(node for node in NODES if node != first)
        workflow = f"w{other[-1]}"
        restarted = await command(fake, f"/restart {workflow}")
        assert f"<b>{workflow}</b> 🔁 restarted" in restarted.text, restarted.text

        status = await command(fake, "/status")
        assert "4 workflows on 4 nodes" in status.text
        assert "🖥 <b>node-h</b> · 1 " in status.text
        for node in NODES:  # the one just restarted may still be starting
            assert f"🖥 <b>{node}</b> · 1 {'' if node == other else 'ok'}" in status.text
            assert f"<b>w{node[-1]}</b> {'' if node == other else 'running'}" in status.text
        tailed = await command(fake, f"/tail {workflow}")
        assert "worker up" in tailed.text, tailed.text
        await command(fake, f"/logs {workflow}")
        [logs] = await fake.wait_for_sent(lambda m: m.document is not None, 1, 30)
        assert logs.document is not None
        assert b"worker up" in logs.document.data
        looking = await command(fake, f"/why {workflow}")
        # No key here: the rules answer on the node that runs it, from its own evidence.
        await wait_until(lambda: any("rules" in t for t in (looking.text, *looking.edits)), 30)

        # An alert from a node that does not poll is delivered, once; a headless node's too.
        order(tmp_path / other, workflow, error="the fetch failed: 503")
        await fake.wait_for_sent(alert("the fetch failed: 503"), 1, 20)
        await wait_until((tmp_path / "node-h" / "data" / "logs" / "wh.log").exists, 30)
        restarted = await command(fake, "/restart wh")
        assert "<b>wh</b> 🔁 restarted" in restarted.text, restarted.text
        order(tmp_path / "node-h", "wh", error="headless fetch failed: 502")
        await fake.wait_for_sent(alert("headless fetch failed: 502"), 1, 20)

        # Names are unique across the fleet; a second copy of a node is refused.
        clash = await asyncio.to_thread(fleet.run_refused, "node-d", workflow, "d-data")
        assert clash.returncode == 2
        assert f"workflow '{workflow}' is configured on node {other} and on node node-d" in (
            clash.stderr
        )
        copy = await asyncio.to_thread(fleet.run_refused, other, "wz", "copy-data")
        assert copy.returncode == 2
        assert f"node {other} is already running" in copy.stderr

        # kill -9 of the poller while a /restart it took is running on another node (its
        # workflow slow to stop): another node takes over within the bound and says so,
        # and answers that /restart, once, without restarting the workflow again.
        order(tmp_path / other, workflow, linger=3)
        starts = fleet.count("started", workflow)
        asked = {m.message_id for m in fake.sent_matching()}
        fake.add_message(f"/restart {workflow}", COMMAND_CHAT, USER)
        await wait_until(lambda: fleet.command_running("restart", workflow), 20)
        killed_at = time.monotonic()
        fleet.kill(first)
        await wait_until(lambda: fleet.poller() not in (None, first), FAILOVER + SLACK)
        took = time.monotonic() - killed_at
        second = fleet.poller()
        assert took < FAILOVER + SLACK
        await fake.wait_for_sent(alert(f"node <b>{second}</b> now serves this chat"), 1, 20)
        [answer] = await fake.wait_for_sent(
            lambda m: m.chat_id == COMMAND_CHAT and m.message_id not in asked, 1, 30
        )
        assert f"<b>{workflow}</b> 🔁 restarted" in answer.text, answer.text
        assert fleet.count("started", workflow) == starts + 1
        answered = await command(fake, "/status")
        assert "4 workflows on 4 nodes" in answered.text

        # The dead node is reported down, loudly, once; a command for it says since when.
        down = f"node <b>{first}</b> is down: 1 workflow unsupervised since"
        await fake.wait_for_sent(alert(down), 1, NODE_TIMEOUT + SLACK + 10)
        refused = await command(fake, f"/restart w{first[-1]}")
        assert f"node {first} is down since" in refused.text, refused.text

        # It comes back: said quietly; it does not take the poller's place.
        fleet.start(first, f"w{first[-1]}")
        await fake.wait_for_sent(alert(f"node <b>{first}</b> is back after"), 1, BOT_START_SECONDS)
        assert fleet.poller() == second

        assert (fake.conflicts, fake.peak_polls) == (0, 1)
        for text in ("the fetch failed: 503", "headless fetch failed: 502", down):
            assert len(fake.sent_matching(alert(text))) == 1, text
        # Each /restart answered once (two of the other node's workflow, one headless): the
        # replay was of the one update left unfinished.
        replies = [m.text for m in fake.sent_matching(lambda m: m.chat_id == COMMAND_CHAT)]
        assert len([text for text in replies if "🔁 restarted" in text]) == 3, replies
