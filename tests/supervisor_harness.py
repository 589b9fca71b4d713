"""Shared pieces for the supervisor's behaviour tests: real processes, real SQLite, tiny intervals.

Workflows are one small Python program (``PROGRAM``) driven by a JSON plan on
its command line, so each test states in one dict what its workflow does:
heartbeat for a while, record errors, stop heartbeating, exit with a code.
It writes the state table itself with ``sqlite3``, as a workflow in any
language would, through the constants of ``workflows.contract``.
"""

from __future__ import annotations

import asyncio
import json
import os
import queue
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager, suppress
from datetime import datetime
from pathlib import Path
from typing import Any

import psutil

from supervisor.agentsettings import AgentSettings
from supervisor.bus import Subscription
from supervisor.config import ResolvedWorkflow, load_config
from supervisor.core import Supervisor
from supervisor.events import Event
from supervisor.runtime import utcnow
from supervisor.settings import SupervisorSettings
from workflows import contract
from workflows.contract import STATE_TABLE_DDL, UPSERT_STATE_SQL

PROGRAM = r"""
import importlib.util, json, os, signal, sqlite3, sys, time
from datetime import UTC, datetime

# contract.py alone: importing the whole ``workflows`` package would slow every start.
spec = importlib.util.spec_from_file_location("contract", CONTRACT)
contract = importlib.util.module_from_spec(spec)
spec.loader.exec_module(contract)
HEARTBEAT_KEY, LAST_ERROR_KEY = contract.HEARTBEAT_KEY, contract.LAST_ERROR_KEY
STATE_TABLE_DDL, STATUS_KEY = contract.STATE_TABLE_DDL, contract.STATUS_KEY
SUMMARY_KEY, UPSERT_STATE_SQL = contract.SUMMARY_KEY, contract.UPSERT_STATE_SQL
format_timestamp = contract.format_timestamp

plan = json.loads(sys.argv[1])
if plan.get("crash_once"):  # the first run follows the plan, later runs heartbeat forever
    if os.path.exists(plan["crash_once"]):
        plan["beats"] = -1
    open(plan["crash_once"], "a").close()
db = sqlite3.connect(os.environ["WORKFLOW_DB"], timeout=5, isolation_level=None)
if plan.get("wal", True):
    db.execute("PRAGMA journal_mode=WAL")
db.execute(STATE_TABLE_DDL)
if plan.get("ignore_term"):
    signal.signal(signal.SIGTERM, signal.SIG_IGN)

def put(key, value):
    db.execute(UPSERT_STATE_SQL, (key, value))

def stamp():
    form = plan.get("stamp", "python")
    if form == "js":
        return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    if form == "sqlite":
        return db.execute("SELECT datetime('now')").fetchone()[0]
    return format_timestamp()

for line in plan.get("print", []):
    print(line, flush=True)
if plan.get("child"):  # a grandchild in the same process group that outlives nothing on its own
    import subprocess
    subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
time.sleep(plan.get("delay", 0))
put(STATUS_KEY, plan.get("status", "running"))
put(SUMMARY_KEY, plan.get("summary", "testing"))
errors = list(plan.get("errors", []))  # [[after_beats, text], ...]
beats = plan.get("beats", -1)  # -1: forever
every = plan.get("every", 0.05)
count = 0
def beat():  # {"beat_file": true}: by touching the file the supervisor named
    if plan.get("beat_file"):
        with open(os.environ[contract.HEARTBEAT_FILE_ENV], "a"):
            pass
        os.utime(os.environ[contract.HEARTBEAT_FILE_ENV])
    else:
        put(HEARTBEAT_KEY, stamp())

while beats < 0 or count < beats:
    beat()
    while errors and errors[0][0] <= count:
        put(LAST_ERROR_KEY, errors.pop(0)[1])
    count += 1
    time.sleep(every)
for key, value in plan.get("final", {}).items():
    put(key, value)
if plan.get("hang"):
    time.sleep(3600)
print("exiting at", time.time(), flush=True)
sys.exit(plan.get("exit", 0))
"""

STOP_GRACE = 1.0


def settings(tmp_path: Path, **overrides: Any) -> SupervisorSettings:
    """Settings with test-sized intervals and everything under ``tmp_path/data``."""
    values: dict[str, Any] = {
        "data_dir": tmp_path / "data",
        "check_interval_seconds": 0.1,
        "error_poll_seconds": 0.05,
        "stop_grace_seconds": STOP_GRACE,
        "healthy_reset_seconds": 600,
        "recovery_seconds": 0,
        "reload_debounce_seconds": 0.2,
        "status_interval_seconds": 0,
        **overrides,
    }
    return SupervisorSettings(**values)


def program(tmp_path: Path) -> Path:
    """The workflow program, written once per test directory."""
    path = tmp_path / "worker.py"
    if not path.exists():
        path.write_text(f"CONTRACT = {contract.__file__!r}\n{PROGRAM}", encoding="utf-8")
    return path


def command(tmp_path: Path, **plan: Any) -> list[str]:
    """The argv running ``PROGRAM`` with ``plan``."""
    return [sys.executable, str(program(tmp_path)), json.dumps(plan)]


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str | Path):
        return json.dumps(str(value))  # a JSON string is a valid TOML basic string
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + "}"
    return "[" + ", ".join(_toml_value(item) for item in value) + "]"


def write_toml(path: Path, tables: Sequence[Mapping[str, Any]]) -> Path:
    lines: list[str] = []
    for table in tables:
        lines.append("[[workflows]]")
        lines.extend(f"{key} = {_toml_value(value)}" for key, value in table.items())
        lines.append("")
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def resolve(
    tmp_path: Path, conf: SupervisorSettings, *tables: Mapping[str, Any]
) -> list[ResolvedWorkflow]:
    """Resolve ``tables`` through the real TOML loader; ``db`` defaults to ``<name>.db``."""
    full = [{"db": f"{table['name']}.db", **table} for table in tables]
    return load_config(write_toml(tmp_path / "supervisor.toml", full), conf)


def table(tmp_path: Path, name: str, **options: Any) -> dict[str, Any]:
    """A workflow table running ``PROGRAM``; ``plan`` is its plan, the rest TOML keys."""
    plan = options.pop("plan", {})
    return {"name": name, "command": command(tmp_path, **plan), **options}


@asynccontextmanager
async def running(
    conf: SupervisorSettings,
    flows: Sequence[ResolvedWorkflow],
    *,
    agent: AgentSettings | None = None,
    clock: Callable[[], datetime] = utcnow,
) -> AsyncIterator[tuple[Supervisor, Subscription]]:
    """A started supervisor and a subscription made before startup (it sees every event).

    ``agent`` pins the Claude settings (by default they come from the environment and .env);
    ``clock`` the time its budget days go by.
    """
    supervisor = Supervisor(conf, flows, agent=agent, clock=clock)
    subscription = supervisor.events()
    await supervisor.startup()
    try:
        yield supervisor, subscription
    finally:
        await supervisor.shutdown()


async def wait_for_event(
    subscription: Subscription,
    kind: str,
    workflow: str | None = None,
    timeout: float = 20,  # noqa: ASYNC109 - the shared helper's agreed signature
) -> Event:
    """The next event of ``kind`` (for ``workflow``), skipping others; fails after ``timeout``."""

    async def first() -> Event:
        async for event in subscription:
            if event.kind == kind and (workflow is None or event.workflow == workflow):
                return event
        raise AssertionError(f"event stream ended before a {kind!r} event")

    try:
        return await asyncio.wait_for(first(), timeout)
    except TimeoutError:
        raise AssertionError(f"no {kind!r} event for {workflow or 'any'} in {timeout}s") from None


async def collect(subscription: Subscription, seconds: float) -> list[Event]:
    """Every event arriving within ``seconds``."""
    seen: list[Event] = []

    async def gather() -> None:
        async for event in subscription:
            seen.append(event)

    with suppress(TimeoutError):
        await asyncio.wait_for(gather(), seconds)
    return seen


def write_state(db: Path, key: str, value: str) -> None:
    """Write one key as a workflow would (creating the table)."""
    connection = sqlite3.connect(db, timeout=5, isolation_level=None)
    try:
        connection.execute(STATE_TABLE_DDL)
        connection.execute(UPSERT_STATE_SQL, (key, value))
    finally:
        connection.close()


def read_state_key(db: Path, key: str) -> str | None:
    connection = sqlite3.connect(db, timeout=5)
    try:
        row = connection.execute("SELECT value FROM state WHERE key = ?", (key,)).fetchone()
    finally:
        connection.close()
    return None if row is None else str(row[0])


def live_group(pgid: int) -> list[psutil.Process]:
    """Processes of group ``pgid`` that are alive (zombies are dead, only not yet reaped)."""
    members = []
    for proc in psutil.process_iter(["status"]):
        try:
            if os.getpgid(proc.pid) == pgid and proc.info["status"] != psutil.STATUS_ZOMBIE:
                members.append(proc)
        except (OSError, psutil.Error):
            continue
    return members


def copies(marker: str) -> list[psutil.Process]:
    """Live processes whose command line carries ``marker``: a workflow's copies."""
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        cmdline = proc.info["cmdline"] or []
        if proc.info["status"] != psutil.STATUS_ZOMBIE and any(marker in a for a in cmdline):
            found.append(proc)
    return found


class Headless:
    """``python -m supervisor run --json`` as a subprocess, its JSON lines read by a thread."""

    def __init__(
        self,
        config: Path,
        conf: SupervisorSettings,
        *args: str,
        env: Mapping[str, str] | None = None,
    ) -> None:
        environment = {
            **os.environ,
            "SUPERVISOR_CONFIG": str(config),
            "SUPERVISOR_DATA_DIR": str(conf.data_dir),
            "SUPERVISOR_CHECK_INTERVAL_SECONDS": str(conf.check_interval_seconds),
            "SUPERVISOR_ERROR_POLL_SECONDS": str(conf.error_poll_seconds),
            "SUPERVISOR_STOP_GRACE_SECONDS": str(conf.stop_grace_seconds),
            "SUPERVISOR_STATUS_INTERVAL_SECONDS": str(conf.status_interval_seconds),
            **(env or {}),
        }
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "supervisor", "run", *args],
            env=environment,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []  # every line handed out so far
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)

    def next_line(self, timeout: float = 30) -> str:
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no output line in {timeout}s") from None
        self.seen.append(line)
        return line

    def wait_for(self, kind: str, timeout: float = 30) -> dict[str, Any]:
        """The next JSON event of ``kind``."""
        deadline = time.monotonic() + timeout
        while True:
            event = json.loads(self.next_line(max(deadline - time.monotonic(), 0.01)))
            if event["kind"] == kind:
                return dict(event)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
