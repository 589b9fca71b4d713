"""The whole bot, in the test's event loop, talking HTTP to the stand-in Bot API.

``bot_running`` starts ``FakeBotAPI`` and a real ``TelegramBot`` over a real
``Supervisor`` whose workflows are real processes: ``worker`` (a small program
that heartbeats and obeys orders the test writes to a control file: print a
line, record an error or its agents' cost, stop heartbeating, exit with a code) and the bundled
``demo``. Commands come from an allowed private chat, alerts go to a group
topic, so a reply and an alert are never mistaken for each other.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bot.redact import install_redaction
from bot.settings import BotSettings
from bot.systemd import SystemdNotifier
from bot.telegram_app import TelegramBot
from supervisor.core import Supervisor
from supervisor.secrets import Redactor
from supervisor.settings import SupervisorSettings
from tests.fakes.botapi import FakeBotAPI, SentMessage
from tests.supervisor_harness import resolve, settings, write_toml

TOKEN = "123456:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsawQ"
ALERT_CHAT = -1001234
THREAD = 7
COMMAND_CHAT = 4242
USER = 4242
REPO = Path(__file__).resolve().parents[1]
# How long a bot may take to say "bot up": a process imports, opens its DB and starts its
# workflows first, and on a busy 2-core machine under pytest -n 4 that takes seconds.
BOT_START_SECONDS = 30.0
DEMO = REPO / "workflows" / "examples" / "demo.py"

WORKER = r"""
import json, os, signal, sqlite3, sys, time
from workflows.contract import (COST_KEY, HEARTBEAT_KEY, LAST_ERROR_KEY, STATE_TABLE_DDL,
    STATUS_KEY, SUMMARY_KEY, UPSERT_STATE_SQL, format_timestamp)

control = os.path.join(sys.argv[1], os.environ["WORKFLOW_NAME"])
db = sqlite3.connect(os.environ["WORKFLOW_DB"], timeout=5, isolation_level=None)
db.execute("PRAGMA journal_mode=WAL")
db.execute(STATE_TABLE_DDL)

def put(key, value):
    db.execute(UPSERT_STATE_SQL, (key, value))

def orders():
    try:
        with open(control, encoding="utf-8") as file:
            return json.load(file)
    except (OSError, ValueError):
        return {}

def on_term(signum, frame):  # {"linger": s}: slow to stop, then ended by the signal as ever
    time.sleep(orders().get("linger", 0))
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGTERM)

signal.signal(signal.SIGTERM, on_term)
put(STATUS_KEY, "running")
put(SUMMARY_KEY, "working")
print("worker up", flush=True)
done, beat = {}, 0
while True:
    order = orders()
    if "exit" in order:
        print("exiting with", order["exit"], flush=True)
        sys.exit(order["exit"])
    if order.get("hang"):
        time.sleep(3600)
    for key, state_key in (("summary", SUMMARY_KEY), ("error", LAST_ERROR_KEY),
                           ("status", STATUS_KEY), ("cost", COST_KEY)):
        if key in order and done.get(key) != order[key]:
            done[key] = order[key]
            put(state_key, order[key])
    if "print" in order and done.get("print") != order["print"]:
        done["print"] = order["print"]
        print(order["print"], flush=True)
    put(HEARTBEAT_KEY, format_timestamp())
    beat += 1
    if beat % 5 == 0:
        print(f"beat {beat}", flush=True)
    time.sleep(0.05)
"""


def worker_table(tmp_path: Path, name: str = "worker", **options: Any) -> dict[str, Any]:
    """A workflow running ``WORKER``: quick restarts, one restart before giving up."""
    program = tmp_path / "worker.py"
    if not program.exists():
        program.write_text(WORKER, encoding="utf-8")
    control = tmp_path / "control"
    control.mkdir(exist_ok=True)
    return {
        "name": name,
        "command": [sys.executable, str(program), str(control)],
        "restart_backoff_seconds": [0.2],
        "max_restart_attempts": 1,
        "hang_threshold_seconds": 10,
        **options,
    }


def demo_table() -> dict[str, Any]:
    return {"name": "demo", "script": str(DEMO), "env": {"DEMO_STEP_SECONDS": "0.2"}}


def default_tables(tmp_path: Path) -> list[dict[str, Any]]:
    return [worker_table(tmp_path), demo_table()]


def order(tmp_path: Path, workflow: str, **orders: Any) -> None:
    """Tell a running ``WORKER`` what to do next (atomically replaces its orders)."""
    path = tmp_path / "control" / workflow
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(orders), encoding="utf-8")
    temporary.replace(path)


def is_alert(text: str) -> Callable[[SentMessage], bool]:
    return lambda m: m.chat_id == ALERT_CHAT and text in m.text


@dataclass
class BotRig:
    """A running bot and ways to talk to it as a user."""

    fake: FakeBotAPI
    bot: TelegramBot
    supervisor: Supervisor
    tmp_path: Path

    def order(self, workflow: str, **orders: Any) -> None:
        order(self.tmp_path, workflow, **orders)

    def _seen(self) -> set[int]:
        return {m.message_id for m in self.fake.sent_matching()}

    async def send(
        self,
        text: str,
        *,
        chat: int = COMMAND_CHAT,
        user: int = USER,
        date: int | None = None,
        count: int = 1,
    ) -> list[SentMessage]:
        """Send ``text`` as ``user`` in ``chat`` and return the ``count`` replies."""
        seen = self._seen()
        self.fake.add_message(text, chat, user, date)
        return await self.fake.wait_for_sent(
            lambda m: m.chat_id == chat and m.message_id not in seen, count
        )

    async def ask(self, text: str, **options: Any) -> str:
        """The text of the (first) reply to ``text``."""
        return (await self.send(text, **options))[0].text

    async def alert(self, text: str, count: int = 1, within: float = 20) -> list[SentMessage]:
        return await self.fake.wait_for_sent(is_alert(text), count, within)

    async def wait_state(self, workflow: str, *states: str, within: float = 20) -> None:
        """Wait until ``workflow``'s process state is one of ``states``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while True:
            [status] = await self.supervisor.status(workflow)
            if status.state in states:
                return
            if loop.time() > deadline:
                raise AssertionError(f"{workflow} is {status.state}, not one of {states}")
            await asyncio.sleep(0.02)


def bot_settings(fake: FakeBotAPI, **overrides: Any) -> BotSettings:
    values: dict[str, Any] = {
        "telegram_bot_token": fake.token,
        "telegram_chat_id": ALERT_CHAT,
        "telegram_allowed_chat_ids": [COMMAND_CHAT],
        "telegram_api_base_url": fake.base_url,
        "telegram_message_thread_id": THREAD,
        "telegram_pace_seconds": 0.01,
        "telegram_group_pace_seconds": 0.01,
        "telegram_poll_timeout_seconds": 1,
        **overrides,
    }
    return BotSettings(**values)


@asynccontextmanager
async def bot_running(
    tmp_path: Path,
    tables: Sequence[Mapping[str, Any]] | None = None,
    *,
    fake: FakeBotAPI | None = None,
    systemd: SystemdNotifier | None = None,
    conf: SupervisorSettings | None = None,
    **overrides: Any,
) -> AsyncIterator[BotRig]:
    """A started bot (its hello delivered); on exit it is stopped as SIGTERM would.

    ``conf``: the supervisor's settings (``settings(tmp_path)`` by default)."""
    server = fake or FakeBotAPI(TOKEN).start()
    conf = conf or settings(tmp_path)
    flows = resolve(tmp_path, conf, *(default_tables(tmp_path) if tables is None else tables))
    supervisor = Supervisor(conf, flows, redactor=Redactor([server.token]))  # as python -m bot
    install_redaction([server.token])  # as ``python -m bot`` does
    notifier = systemd or SystemdNotifier({})
    bot = TelegramBot(bot_settings(server, **overrides), supervisor, notifier)
    stop = asyncio.Event()
    task = asyncio.create_task(bot.run(stop))
    try:
        await server.wait_for_sent(is_alert("bot up"), timeout=BOT_START_SECONDS)
        yield BotRig(server, bot, supervisor, tmp_path)
    finally:
        stop.set()
        try:
            await asyncio.wait_for(task, 10)
        finally:
            if fake is None:
                server.stop()


def process_env(fake: FakeBotAPI, tmp_path: Path, **extra: str) -> dict[str, str]:
    """The environment of a ``python -m bot`` child, with test-sized intervals."""
    toml = write_toml(
        tmp_path / "bot.toml",
        [{"db": f"{t['name']}.db", **t} for t in default_tables(tmp_path)],
    )
    conf = SupervisorSettings(data_dir=tmp_path / "data")
    return {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "TELEGRAM_BOT_TOKEN": TOKEN,
        "TELEGRAM_CHAT_ID": str(ALERT_CHAT),
        "TELEGRAM_ALLOWED_CHAT_IDS": str(COMMAND_CHAT),
        "TELEGRAM_API_BASE_URL": fake.base_url,
        "TELEGRAM_MESSAGE_THREAD_ID": str(THREAD),
        "TELEGRAM_PACE_SECONDS": "0.01",
        "TELEGRAM_GROUP_PACE_SECONDS": "0.01",
        "TELEGRAM_POLL_TIMEOUT_SECONDS": "1",
        "SUPERVISOR_CONFIG": str(toml),
        "SUPERVISOR_DATA_DIR": str(conf.data_dir),
        "SUPERVISOR_CHECK_INTERVAL_SECONDS": "0.1",
        "SUPERVISOR_ERROR_POLL_SECONDS": "0.05",
        "SUPERVISOR_STOP_GRACE_SECONDS": "1",
        "SUPERVISOR_STATUS_INTERVAL_SECONDS": "0",
        "LOG_LEVEL": "DEBUG",
        **extra,
    }
