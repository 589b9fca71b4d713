"""A fleet of real ``python -m bot`` nodes on Postgres: failover, cross-node commands, alerts.

Starts ``--nodes`` nodes (each its own data dir and one ``WORKER`` workflow,
``tests/bot_harness.py``) on a Postgres database of its own (created here,
dropped at the end) and the stand-in Bot API (``FakeBotAPI``, which answers
a second concurrent ``getUpdates`` with 409 as Telegram does), then prints
three figures; it asserts nothing:

1. Failover: ``--kills`` times, kill -9 the poller (the holder of
   ``fleet_lease``) and time, from the kill, the lease passing to another
   node (read from the DB), the stand-in's first ``getUpdates`` from another
   node (the new poller: what the user sees; each node has a base URL of its
   own on the stand-in, so every request says who made it), and the reply to
   a ``/status NAME`` injected at the kill. The killed node is then started
   again (a start refused as "already running" while its heartbeat is still
   fresh is retried), so the fleet stays at N nodes. Min/p50/max beside the
   bound ``FLEET_FAILOVER_SECONDS`` (and the README's 0.7 F), and the
   stand-in's ``conflicts`` and ``peak_polls`` over the whole run (0 and 1
   when two pollers never overlapped).
2. Cross-node commands: ``--commands`` times ``/status NAME`` (or ``/tail
   NAME 5``) for a workflow on a node that does not poll, timed from
   injecting the update to the reply's sendMessage reaching the stand-in.
3. Alerts through the failovers: from 2 s before each kill until 3 s after
   the new poller's first poll, the workflows of the nodes left running
   record an error every ``--alert-gap`` seconds (unique texts, turn by
   turn across nodes); after the last failover settles, each text is
   looked for in what the alert chat received: sent, delivered, duplicates,
   lost, and the delay from writing the error to its sendMessage.

Node logs go to ``<tmp>/<node>.log``; the directory is kept (and named) with
``--keep`` or when a figure looks wrong.

    python bench/fleet.py [--nodes 3] [--kills 5] [--commands 50] [--failover 15]
                          [--node-timeout 60] [--verb status|tail] [--keep]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import psutil  # noqa: E402
import sqlalchemy as sa  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from supervisor.knownsettings import PREFIXES  # noqa: E402
from tests.bot_harness import (  # noqa: E402
    ALERT_CHAT,
    BOT_START_SECONDS,
    COMMAND_CHAT,
    TOKEN,
    USER,
    order,
    process_env,
    worker_table,
)
from tests.fakes.botapi import JSON, FakeBotAPI, SentMessage  # noqa: E402
from tests.supervisor_harness import write_toml  # noqa: E402

DEFAULT_POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
ISOLATED_PREFIXES = (*PREFIXES, "ANTHROPIC_", "WORKFLOWS_", "DEMO_")
LEAD_SECONDS = 2.0  # alerts are written this long before each kill ...
TAIL_SECONDS = 3.0  # ... and this long after the new poller's first poll
STEADY_SECONDS = 60.0  # how long the fleet may take to have one poller again
COMMAND_TIMEOUT = 30.0
COMMAND_GAP = 0.2  # between commands: a user tapping, not a flood
TICK = 0.02
ALERT_MARK = re.compile(r"FB(\d{6})X")


def percentile(values: Sequence[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


@dataclass(frozen=True, slots=True)
class Arrival:
    """A sendMessage as the stand-in received it."""

    mono: float
    wall: float
    node: str  # whose request it was
    message: SentMessage


class Recorder(FakeBotAPI):
    """The stand-in Bot API, noting when each getUpdates and sendMessage came, and from whom.

    Each node is given a base URL of its own on the one server (``base_url_for``):
    ``/n/<node>/bot<token>/...``, so every request says which node made it.
    """

    def __init__(self, token: str) -> None:
        super().__init__(token)
        self._local = threading.local()
        self.polls: list[tuple[float, str]] = []  # (monotonic time, node)
        self.arrivals: list[Arrival] = []

    def base_url_for(self, node: str) -> str:
        return f"http://127.0.0.1:{self.port}/n/{node}/bot"

    def handle(
        self, path: str, raw: dict[str, Any], client_gone: Callable[[], bool] | None = None
    ) -> tuple[int, JSON]:
        node = ""
        if path.startswith("/n/"):
            _, _, node, rest = path.split("/", 3)
            path = f"/{rest}"
        self._local.node = node  # one thread per request
        return super().handle(path, raw, client_gone)

    def _get_updates(self, params: JSON, client_gone: Callable[[], bool]) -> list[JSON]:
        with self._cond:
            self.polls.append((time.monotonic(), str(self._local.node)))
        return super()._get_updates(params, client_gone)

    def _send_message(self, params: JSON) -> JSON:
        reply = super()._send_message(params)
        node = str(self._local.node)
        self.arrivals.append(Arrival(time.monotonic(), time.time(), node, self.sent[-1]))
        return reply

    def arrived(self, since: int = 0) -> list[Arrival]:
        with self._cond:
            return self.arrivals[since:]


@dataclass
class Node:
    name: str
    workflow: str
    home: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


class Fleet:
    """The nodes' processes, the bench's view of their DB, and every process to end at the end."""

    def __init__(
        self,
        tmp: Path,
        fake: Recorder,
        url: str,
        *,
        count: int,
        failover: float,
        node_timeout: float,
    ) -> None:
        self.tmp, self.fake, self.url = tmp, fake, url
        self.failover, self.node_timeout = failover, node_timeout
        letters = "abcdefghijklmnopqrstuvwxyz"
        self.nodes = [Node(f"node-{c}", f"w{c}", tmp / f"node-{c}") for c in letters[:count]]
        self.engine = sa.create_engine(url, pool_pre_ping=True)
        self.strays: dict[int, float] = {}  # workflows of killed nodes: pid -> create_time

    def node(self, name: str | None) -> Node | None:
        return next((node for node in self.nodes if node.name == name), None)

    def env(self, node: Node) -> dict[str, str]:
        node.home.mkdir(exist_ok=True)
        toml = write_toml(
            node.home / "fleet.toml",
            [{"db": f"{node.workflow}.db", **worker_table(node.home, node.workflow)}],
        )
        return process_env(
            self.fake,
            node.home,
            TELEGRAM_API_BASE_URL=self.fake.base_url_for(node.name),
            SUPERVISOR_CONFIG=str(toml),
            SUPERVISOR_DB_URL=self.url,
            SUPERVISOR_NODE=node.name,
            FLEET_FAILOVER_SECONDS=f"{self.failover:g}",
            FLEET_NODE_TIMEOUT_SECONDS=f"{self.node_timeout:g}",
            LOG_LEVEL="INFO",
        )

    def launch(self, node: Node) -> None:
        with open(self.tmp / f"{node.name}.log", "ab") as log:
            node.proc = subprocess.Popen(
                [sys.executable, "-m", "bot"],
                env=self.env(node),
                cwd=node.home,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=log,
                start_new_session=True,  # Ctrl-C reaches the bench; it stops the nodes
            )

    def hellos(self, node: Node) -> int:
        hello = f"bot up on node {node.name}:"
        return sum(
            a.message.chat_id == ALERT_CHAT and hello in a.message.text for a in self.fake.arrived()
        )

    def start(self, node: Node, within: float) -> int:
        """Start ``node`` and wait for its hello in the chat; the starts refused meanwhile.

        A node killed moments ago is refused (exit 2, "already running") until its
        heartbeat is older than the node timeout; that start is retried every second.
        """
        deadline = time.monotonic() + within
        refused = 0
        while True:
            before = self.hellos(node)
            self.launch(node)
            code = self.wait_up(node, before, deadline - time.monotonic())
            if code is None:
                return refused
            if code != 2 or time.monotonic() > deadline:
                raise RuntimeError(f"{node.name} exited with {code}: {self.log_tail(node)}")
            refused += 1
            time.sleep(1.0)

    def wait_up(self, node: Node, before: int, within: float) -> int | None:
        """None once ``node``'s hello number ``before + 1`` arrived; its exit code if it ended."""
        assert node.proc is not None
        deadline = time.monotonic() + within
        while (code := node.proc.poll()) is None:
            if self.hellos(node) > before:
                return None
            if time.monotonic() > deadline:
                raise TimeoutError(f"{node.name} did not say 'bot up' within {within:.0f} s")
            time.sleep(0.05)
        node.proc = None
        return code

    def log_tail(self, node: Node, lines: int = 3) -> str:
        text = (self.tmp / f"{node.name}.log").read_text(encoding="utf-8", errors="replace")
        return " | ".join(text.strip().splitlines()[-lines:])

    def poller(self) -> str | None:
        try:
            with self.engine.connect() as conn:
                holder = conn.execute(
                    sa.text("SELECT node FROM fleet_lease WHERE expires_at > now()")
                ).scalar()
        except sa.exc.ProgrammingError:  # no fleet table yet
            return None
        return None if holder is None else str(holder)

    def running(self) -> set[str]:
        """The nodes whose workflow its node last published as running (heartbeating)."""
        try:
            with self.engine.connect() as conn:
                rows = conn.execute(sa.text("SELECT node, status FROM fleet_workflows")).all()
        except sa.exc.ProgrammingError:  # no fleet table yet
            return set()
        return {str(row.node) for row in rows if json.loads(row.status)["state"] == "running"}

    def logged_errors(self) -> str:
        """The nodes' log lines saying a workflow reported an error."""
        lines = []
        for node in self.nodes:
            path = self.tmp / f"{node.name}.log"
            if path.exists():
                text = path.read_text(encoding="utf-8", errors="replace")
                lines += [line for line in text.splitlines() if " error: bench alert " in line]
        return "\n".join(lines)

    def note_children(self, node: Node) -> None:
        if node.proc is None:
            return
        with contextlib.suppress(psutil.Error):
            for child in psutil.Process(node.proc.pid).children(recursive=True):
                with contextlib.suppress(psutil.Error):
                    self.strays[child.pid] = child.create_time()

    def kill(self, node: Node) -> None:
        assert node.proc is not None
        self.note_children(node)  # its workflows outlive it: ended at the end
        node.proc.send_signal(signal.SIGKILL)
        node.proc.wait(timeout=10)
        node.proc = None

    def close(self) -> None:
        live = [node for node in self.nodes if node.alive]
        for node in live:
            self.note_children(node)
            assert node.proc is not None
            node.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 20
        for node in live:
            assert node.proc is not None
            try:
                node.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                node.proc.kill()
                node.proc.wait(timeout=10)
        for pid, created in self.strays.items():
            with contextlib.suppress(psutil.Error, OSError):
                if psutil.Process(pid).create_time() != created:
                    continue  # the pid was reused: not ours
                try:
                    os.killpg(pid, signal.SIGKILL)  # workflows run in their own session
                except OSError:
                    os.kill(pid, signal.SIGKILL)
        self.engine.dispose()


class AlertWriter(threading.Thread):
    """Makes the workflows of ``aim``'s nodes record an error every ``gap`` seconds, in turn."""

    def __init__(self, gap: float) -> None:
        super().__init__(daemon=True, name="alert-writer")
        self.gap = gap
        self.written: dict[int, float] = {}  # number -> epoch time it was ordered
        self._targets: list[Node] = []
        self._lock = threading.Lock()
        self._done = threading.Event()

    def aim(self, targets: Sequence[Node]) -> None:
        with self._lock:
            self._targets = list(targets)

    def stop(self) -> None:
        self.aim([])
        self._done.set()

    def run(self) -> None:
        turn = 0
        due = time.monotonic()
        while not self._done.is_set():
            with self._lock:
                targets = list(self._targets)
            if targets:
                node = targets[turn % len(targets)]
                turn += 1
                number = len(self.written)
                text = f"bench alert FB{number:06d}X from {node.name}"
                self.written[number] = time.time()
                order(node.home, node.workflow, error=text)
            due = max(due + self.gap, time.monotonic())
            self._done.wait(max(0.0, due - time.monotonic()))


@dataclass
class Failover:
    killed: str
    new: str | None = None  # the lease's holder after
    poller: str = "?"  # who made the first getUpdates after the kill
    lease_s: float | None = None  # kill -> lease held by another node (DB)
    poll_s: float | None = None  # kill -> first getUpdates from a new client
    answer_s: float | None = None  # kill -> reply to the command sent at the kill
    answer: str = ""
    reply: str = ""  # the reply's text, when it is not the expected one
    probe: str = ""
    cross: str = ""  # the first command for another node's workflow after the takeover
    cross_reply: str = ""
    cross_ok: bool = True
    back_s: float | None = None  # kill -> the killed node's hello after its restart
    refused: int = 0


@dataclass
class Command:
    text: str
    seconds: float | None
    kind: str
    reply: str = ""


def reply_kind(text: str, name: str, verb: str) -> str:
    if "unknown workflow" in text:
        return "unknown workflow"
    if re.search(r"node \S+ (is down|is stopped|is not known|did not answer)", text):
        return "refused"
    ok = "restarts:" in text if verb == "status" else f"<b>{name}</b> log" in text
    return "ok" if ok else "other"


def command_text(verb: str, workflow: str) -> str:
    return f"/status {workflow}" if verb == "status" else f"/tail {workflow} 5"


def ask(fake: Recorder, text: str, within: float = COMMAND_TIMEOUT) -> tuple[float | None, str]:
    """Inject ``text`` into the command chat; seconds until the first reply, and its text."""
    since = len(fake.arrived())
    started = time.monotonic()
    fake.add_message(text, COMMAND_CHAT, USER)
    while time.monotonic() - started < within:
        for arrival in fake.arrived(since):
            if arrival.message.chat_id == COMMAND_CHAT:
                return arrival.mono - started, arrival.message.text
        time.sleep(TICK / 4)
    return None, ""


def wait_steady(fleet: Fleet, within: float = STEADY_SECONDS) -> Node:
    """The poller, once every node and its workflow run, one holds the lease and its long
    poll waits. (A node's hello comes before its workflow's first heartbeat, and an error
    ordered before the worker reads its orders would be overwritten unseen.)"""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        holder = fleet.node(fleet.poller())
        everyone = all(node.alive for node in fleet.nodes)
        working = fleet.running() >= {node.name for node in fleet.nodes}
        polling = fleet.fake.polls_in_flight == 1
        if holder is not None and holder.alive and everyone and working and polling:
            return holder
        time.sleep(0.1)
    raise TimeoutError(f"no steady poller within {within:.0f} s")


def commands(fleet: Fleet, count: int, verb: str) -> tuple[Command, list[Command]]:
    """The first cross-node command on a fresh poller, then ``count`` after a ``/status``."""
    poller = wait_steady(fleet)
    others = [node for node in fleet.nodes if node is not poller]
    cold_text = command_text(verb, others[0].workflow)
    seconds, reply = ask(fleet.fake, cold_text)
    cold = Command(cold_text, seconds, reply_kind(reply, others[0].workflow, verb), reply)
    time.sleep(COMMAND_GAP)
    ask(fleet.fake, "/status")  # what a user does first; it also fills the poller's name cache
    samples: list[Command] = []
    for number in range(count):
        time.sleep(COMMAND_GAP)
        node = others[number % len(others)]
        text = command_text(verb, node.workflow)
        seconds, reply = ask(fleet.fake, text)
        samples.append(Command(text, seconds, reply_kind(reply, node.workflow, verb), reply))
    return cold, samples


def failover(fleet: Fleet, writer: AlertWriter, verb: str) -> Failover:
    """Kill -9 the poller while the others record errors; time the takeover; restart it."""
    fake = fleet.fake
    poller = wait_steady(fleet)
    others = [node for node in fleet.nodes if node is not poller]
    writer.aim(others)
    time.sleep(LEAD_SECONDS)
    polls_before = len(fake.polls)
    probe = others[0]
    sample = Failover(poller.name, probe=command_text(verb, probe.workflow))
    fleet.kill(poller)
    killed_at = time.monotonic()
    since = len(fake.arrived())
    fake.add_message(sample.probe, COMMAND_CHAT, USER)
    deadline = killed_at + 3 * fleet.failover + 30
    while time.monotonic() < deadline:
        if sample.lease_s is None:
            holder = fleet.poller()
            if holder not in (None, poller.name):
                sample.lease_s, sample.new = time.monotonic() - killed_at, holder
        if sample.poll_s is None:
            for moment, node in list(fake.polls)[polls_before:]:
                if node != poller.name:
                    sample.poll_s, sample.poller = moment - killed_at, node
                    break
        if sample.answer_s is None:
            for arrival in fake.arrived(since):
                if arrival.message.chat_id == COMMAND_CHAT:
                    sample.answer_s = arrival.mono - killed_at
                    sample.answer = reply_kind(arrival.message.text, probe.workflow, verb)
                    if sample.answer != "ok":
                        sample.reply = arrival.message.text
                    break
        if None not in (sample.lease_s, sample.poll_s, sample.answer_s):
            break
        time.sleep(TICK)
    third = next((n for n in others if n.name not in (sample.new, probe.name)), None)
    if sample.new == probe.name and third is not None:  # the probe was local to the new poller
        text = command_text(verb, third.workflow)
        _, reply = ask(fake, text)
        sample.cross_ok = reply_kind(reply, third.workflow, verb) == "ok"
        sample.cross = f"'{text}' {reply_kind(reply, third.workflow, verb)}"
        sample.cross_reply = "" if sample.cross_ok else reply
    elif sample.new != probe.name:
        sample.cross_ok = sample.answer == "ok"
        sample.cross = f"'{sample.probe}' {sample.answer}"
    polled_at = killed_at + (sample.poll_s if sample.poll_s is not None else 0.0)
    time.sleep(max(0.0, polled_at + TAIL_SECONDS - time.monotonic()))
    writer.aim([])
    order(poller.home, poller.workflow)  # no order left over for its next run
    sample.refused = fleet.start(poller, fleet.node_timeout + 2 * BOT_START_SECONDS)
    sample.back_s = time.monotonic() - killed_at
    return sample


def settle(fake: Recorder, writer: AlertWriter, within: float) -> None:
    """Wait until every written alert has arrived (or ``within``), then a little for repeats."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        seen = {
            int(n)
            for a in fake.arrived()
            if a.message.chat_id == ALERT_CHAT
            for n in ALERT_MARK.findall(a.message.text)
        }
        if set(writer.written) <= seen:
            break
        time.sleep(0.2)
    time.sleep(2.0)


@dataclass
class Delivery:
    sent: int
    delivered: int
    duplicates: int  # extra copies, over all alerts
    doubled: dict[int, list[str]]  # alerts that came more than once: who sent each copy
    lost: list[int]
    delays: list[float]


def delivery(fake: Recorder, written: dict[int, float]) -> Delivery:
    copies: Counter[int] = Counter()
    senders: dict[int, list[str]] = {}
    first: dict[int, float] = {}
    for arrival in fake.arrived():
        message = arrival.message
        if message.chat_id != ALERT_CHAT:
            continue
        for mark in ALERT_MARK.findall(message.original_text or message.text):
            number = int(mark)
            copies[number] += 1
            senders.setdefault(number, []).append(f"{arrival.node} at {arrival.wall:.3f}")
            first.setdefault(number, arrival.wall)
    delays = [first[n] - at for n, at in written.items() if n in first]
    return Delivery(
        sent=len(written),
        delivered=sum(1 for n in written if n in copies),
        duplicates=sum(c - 1 for n, c in copies.items() if n in written),
        doubled={n: senders[n] for n, c in sorted(copies.items()) if c > 1 and n in written},
        lost=sorted(n for n in written if n not in copies),
        delays=delays,
    )


def spread(values: Sequence[float]) -> str:
    if not values:
        return "no samples"
    low, mid, high = min(values), percentile(values, 0.5), max(values)
    return f"min {low:.2f} s · p50 {mid:.2f} s · max {high:.2f} s"


def seconds_or_none(value: float | None) -> str:
    return "none" if value is None else f"{value:.2f} s"


def report(
    fleet: Fleet,
    *,
    cold: Command,
    samples: list[Command],
    failovers: list[Failover],
    sent: Delivery,
    verb: str,
    gap: float,
) -> bool:
    """Print the figures; whether any looks wrong (logs worth keeping)."""
    fake, bound = fleet.fake, fleet.failover
    wrong = False
    print("\n1. failover: kill -9 of the poller")
    for number, f in enumerate(failovers, 1):
        print(
            f"  kill {number}: {f.killed} -> {f.new or '?'} (first getUpdates by {f.poller}):"
            f" lease {seconds_or_none(f.lease_s)}, first getUpdates "
            f"{seconds_or_none(f.poll_s)}, '{f.probe}' answered {seconds_or_none(f.answer_s)}"
            f" ({f.answer or 'no reply'}); {f.killed} back after {seconds_or_none(f.back_s)}"
            f" ({f.refused} starts refused first)"
        )
        if f.cross:
            print(f"    first command for another node's workflow after it: {f.cross}")
        for reply in (f.reply, f.cross_reply):
            if reply:
                print(f"    the reply was: {reply[:200]!r}")
    polls = [f.poll_s for f in failovers if f.poll_s is not None]
    answers = [f.answer_s for f in failovers if f.answer_s is not None]
    leases = [f.lease_s for f in failovers if f.lease_s is not None]
    over = sum(1 for f in failovers if f.poll_s is None or f.poll_s > bound)
    over_07 = sum(1 for value in polls if value > 0.7 * bound)
    print(f"  lease taken (DB):              {spread(leases)}")
    print(f"  first getUpdates of the new:   {spread(polls)}")
    print(f"  command sent at the kill:      {spread(answers)}")
    print(
        f"  bound FLEET_FAILOVER_SECONDS = {bound:g} s: {len(failovers) - over}/{len(failovers)}"
        f" within; README's 0.7 F = {0.7 * bound:.1f} s: {len(polls) - over_07}/{len(failovers)}"
        " within"
    )
    takeovers = [a for a in fake.arrived() if "now serves this chat" in a.message.text]
    downs = [a for a in fake.arrived() if " is down: " in a.message.text]
    print(
        f"  'now serves this chat' alerts: {len(takeovers)} for {len(failovers)} kills;"
        f" 'is down' alerts: {len(downs)}"
    )
    print(
        f"  Bot API over the whole run: conflicts {fake.conflicts}, most getUpdates at once "
        f"{fake.peak_polls} (0 and 1: never two pollers)"
    )
    wrong |= over > 0 or fake.conflicts > 0 or fake.peak_polls > 1
    wrong |= len(takeovers) != len(failovers) or any(
        f.answer != "ok" or not f.cross_ok for f in failovers
    )

    name = "/status NAME" if verb == "status" else "/tail NAME 5"
    print(f"\n2. cross-node commands: {name} for a workflow on a node that does not poll")
    print(
        f"  first one on a fresh poller (no /status before): {seconds_or_none(cold.seconds)},"
        f" reply: {cold.kind}"
    )
    if cold.kind != "ok":
        print(f"    it was: {cold.reply[:200]!r}")
    timed = [c.seconds * 1000 for c in samples if c.seconds is not None]
    kinds = Counter(c.kind for c in samples)
    if timed:
        print(
            f"  n={len(timed)}: p50 {percentile(timed, 0.5):.0f} ms · p99 "
            f"{percentile(timed, 0.99):.0f} ms · max {max(timed):.0f} ms"
        )
    print(
        f"  replies: {dict(kinds)}; no reply within {COMMAND_TIMEOUT:g} s:"
        f" {len(samples) - len(timed)}"
    )
    for c in samples:
        if c.kind != "ok":
            print(f"    '{c.text}' got: {c.reply[:200]!r}")
    wrong |= cold.kind != "ok" or kinds["ok"] != len(samples)

    print(f"\n3. alerts through the failovers: an error every {gap:g} s on the nodes left running")
    print(
        f"  sent {sent.sent} / delivered {sent.delivered} / duplicates {sent.duplicates} /"
        f" lost {len(sent.lost)}"
    )
    for number, copies in sent.doubled.items():
        print(f"  FB{number:06d}X delivered {len(copies)} times, by {'; '.join(copies)}")
    if sent.lost:
        logged = fleet.logged_errors()
        for number in sent.lost:
            mark = f"FB{number:06d}X"
            said = "reported" if mark in logged else "NOT reported (never an event)"
            print(f"  never delivered: {mark}; its node's supervisor log: {said}")
    if sent.delays:
        print(
            f"  delay write -> sendMessage: p50 {percentile(sent.delays, 0.5):.2f} s ·"
            f" max {max(sent.delays):.2f} s"
        )
    wrong |= sent.duplicates > 0 or bool(sent.lost)
    return wrong


class NoPostgres(Exception):
    """No Postgres server to make the bench's database on."""


@contextlib.contextmanager
def database(server_url: str) -> Iterator[str]:
    """A database of the bench's own on ``server_url``'s server, dropped after."""
    server = make_url(server_url)
    name = f"acp_fleet_bench_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(server, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    except sa.exc.OperationalError as exc:
        admin.dispose()
        raise NoPostgres(f"{server.render_as_string()}: {str(exc).splitlines()[0]}") from exc
    try:
        yield server.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def run(options: argparse.Namespace) -> None:
    with database(options.postgres) as url:
        tmp = Path(tempfile.mkdtemp(prefix="fleet-bench-"))
        keep = bool(options.keep)
        try:
            with Recorder(TOKEN) as fake:
                fleet = Fleet(
                    tmp,
                    fake,
                    url,
                    count=options.nodes,
                    failover=options.failover,
                    node_timeout=options.node_timeout,
                )
                try:
                    keep |= measure(fleet, options)
                finally:
                    fleet.close()
        except BaseException:
            keep = True
            raise
        finally:
            if keep:
                print(f"\nnode logs kept in {tmp}")
            else:
                shutil.rmtree(tmp, ignore_errors=True)


def measure(fleet: Fleet, options: argparse.Namespace) -> bool:
    """Start the nodes, take the three figures and print them; whether any looks wrong."""
    print(
        f"fleet bench: {options.nodes} nodes, FLEET_FAILOVER_SECONDS={options.failover:g},"
        f" FLEET_NODE_TIMEOUT_SECONDS={options.node_timeout:g}, {options.kills} kills,"
        f" {options.commands} commands; logs in {fleet.tmp}",
        flush=True,
    )
    for node in fleet.nodes:  # all at once, as a fleet's hosts boot
        fleet.launch(node)
    for node in fleet.nodes:
        if (code := fleet.wait_up(node, 0, 2 * BOT_START_SECONDS)) is not None:
            raise RuntimeError(f"{node.name} exited with {code}: {fleet.log_tail(node)}")
    cold, samples = commands(fleet, options.commands, options.verb)
    print(f"  {len(samples) + 1} cross-node commands answered or timed out", flush=True)
    writer = AlertWriter(options.alert_gap)
    writer.start()
    try:
        failovers: list[Failover] = []
        for number in range(options.kills):
            failovers.append(sample := failover(fleet, writer, options.verb))
            print(
                f"  kill {number + 1}/{options.kills}: {sample.killed} -> {sample.new},"
                f" first getUpdates after {seconds_or_none(sample.poll_s)}",
                flush=True,
            )
    finally:
        writer.stop()
    settle(fleet.fake, writer, max(30.0, 2 * options.failover))
    return report(
        fleet,
        cold=cold,
        samples=samples,
        failovers=failovers,
        sent=delivery(fleet.fake, writer.written),
        verb=options.verb,
        gap=options.alert_gap,
    )


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # the same clean-up as Ctrl-C


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--kills", type=int, default=5)
    parser.add_argument("--commands", type=int, default=50)
    parser.add_argument(
        "--failover", type=float, default=15.0, help="FLEET_FAILOVER_SECONDS (default 15)"
    )
    parser.add_argument(
        "--node-timeout", type=float, default=60.0, help="FLEET_NODE_TIMEOUT_SECONDS (default 60)"
    )
    parser.add_argument("--verb", choices=["status", "tail"], default="status")
    parser.add_argument("--alert-gap", type=float, default=0.2, help="seconds between errors")
    parser.add_argument(
        "--postgres",
        default=os.environ.get("TEST_POSTGRES_URL") or DEFAULT_POSTGRES,
        help="a server to create the bench's database on (TEST_POSTGRES_URL if set)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the node logs")
    options = parser.parse_args()
    if options.nodes < 2:
        parser.error("--nodes must be at least 2: a failover needs a node to take over")
    for name in list(os.environ):  # as tests/conftest.py: no setting leaks in from the shell
        if name.startswith(ISOLATED_PREFIXES) or name == "NOTIFY_SOCKET":
            del os.environ[name]
    signal.signal(signal.SIGTERM, _terminate)
    try:
        run(options)
    except NoPostgres as exc:
        print(f"bench/fleet.py skipped: cannot create a database on {exc}", file=sys.stderr)
        print("  (give a server with --postgres or TEST_POSTGRES_URL)", file=sys.stderr)
    except KeyboardInterrupt:
        print("interrupted; every node and workflow it started is ended", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
