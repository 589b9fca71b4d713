"""``python -m bot`` as a real process: settings errors, signals, the instance lock, kill -9.

The bot runs against the stand-in Bot API with test-sized intervals; its
workflows are real processes, so "stopped" means no process is left.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from tests.bot_harness import (
    BOT_START_SECONDS,
    COMMAND_CHAT,
    TOKEN,
    USER,
    is_alert,
    order,
    process_env,
)
from tests.fakes.botapi import FakeBotAPI

BOT = [sys.executable, "-m", "bot"]


@pytest.fixture
def fake() -> Iterator[FakeBotAPI]:
    with FakeBotAPI(TOKEN) as server:
        yield server


def start(env: dict[str, str], *args: str, stdin: int | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*BOT, *args],
        env=env,
        stdin=stdin,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def workflow_pids(bot: subprocess.Popen[str]) -> list[int]:
    return [child.pid for child in psutil.Process(bot.pid).children(recursive=True)]


def wait_gone(pids: list[int], timeout: float = 5) -> None:
    _, alive = psutil.wait_procs([p for p in map(_process, pids) if p is not None], timeout=timeout)
    assert not [p for p in alive if p.status() != psutil.STATUS_ZOMBIE]


def _process(pid: int) -> psutil.Process | None:
    try:
        return psutil.Process(pid)
    except psutil.NoSuchProcess:
        return None


def terminate(bot: subprocess.Popen[str]) -> tuple[int, str]:
    bot.send_signal(signal.SIGTERM)
    _, err = bot.communicate(timeout=30)
    return bot.returncode, err


def test_no_token_is_one_line_and_exit_2(tmp_path: Path, fake: FakeBotAPI) -> None:
    env = process_env(fake, tmp_path)
    del env["TELEGRAM_BOT_TOKEN"]
    done = subprocess.run(BOT, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2
    [line] = done.stderr.strip().splitlines()
    assert "TELEGRAM_BOT_TOKEN" in line
    assert "--console" in line


def test_sigterm_stops_the_workflows_says_goodbye_and_exits_0(
    tmp_path: Path, fake: FakeBotAPI
) -> None:
    bot = start(process_env(fake, tmp_path))
    try:
        fake.wait_for_sent_sync(is_alert("bot up"), timeout=BOT_START_SECONDS)
        fake.add_message("/status", COMMAND_CHAT, USER)
        fake.wait_for_sent_sync(lambda m: m.chat_id == COMMAND_CHAT)
        pids = workflow_pids(bot)
        assert pids
    finally:
        code, err = terminate(bot)
    assert code == 0, err
    assert "Traceback" not in err
    wait_gone(pids)
    assert len(fake.sent_matching(is_alert("going down"))) == 1
    assert TOKEN.split(":")[1] not in err  # B6, with LOG_LEVEL=DEBUG


def test_a_second_bot_on_the_same_data_dir_is_refused(tmp_path: Path, fake: FakeBotAPI) -> None:
    env = process_env(fake, tmp_path)
    first = start(env)
    try:
        fake.wait_for_sent_sync(is_alert("bot up"), timeout=BOT_START_SECONDS)
        second = subprocess.run(
            BOT, env=env, capture_output=True, text=True, timeout=60, check=False
        )
        assert second.returncode == 2
        assert "another bot is already running on this data dir" in second.stderr
        assert f"pid {first.pid}" in second.stderr
    finally:
        code, err = terminate(first)
    assert code == 0, err


def test_an_alert_unsent_at_kill_9_is_delivered_once_after_restart(
    tmp_path: Path, fake: FakeBotAPI
) -> None:
    env = process_env(fake, tmp_path)
    bot = start(env)
    try:
        fake.wait_for_sent_sync(is_alert("bot up"), timeout=BOT_START_SECONDS)
        fake.set_down(True)
        order(tmp_path, "worker", error="unsent <error> 42")
        deadline = time.monotonic() + 5
        while not failed_attempts(tmp_path, "unsent"):
            assert time.monotonic() < deadline, "the alert was never attempted"
            time.sleep(0.02)
    finally:
        bot.kill()
        bot.communicate(timeout=30)
    order(tmp_path, "worker")
    fake.set_down(False)
    again = start(env)
    try:
        fake.wait_for_sent_sync(is_alert("unsent &lt;error&gt; 42"), timeout=BOT_START_SECONDS)
        fake.wait_for_sent_sync(is_alert("bot up"), count=2, timeout=BOT_START_SECONDS)
        fake.add_message("/status", COMMAND_CHAT, USER)
        fake.wait_for_sent_sync(lambda m: m.chat_id == COMMAND_CHAT)
        assert len(fake.sent_matching(is_alert("unsent"))) == 1
    finally:
        code, err = terminate(again)
    assert code == 0, err
    assert len(fake.sent_matching(is_alert("unsent"))) == 1


def failed_attempts(tmp_path: Path, text: str) -> int:
    """How often the bot tried and failed to send the pending alert containing ``text``."""
    with contextlib.closing(sqlite3.connect(tmp_path / "data" / "control.db")) as db:
        try:
            row = db.execute(
                "SELECT attempts FROM bot_outbox WHERE status = 'pending' AND text LIKE ?",
                (f"%{text}%",),
            ).fetchone()
        except sqlite3.OperationalError:  # no table yet
            return 0
    return int(row[0]) if row else 0


def test_console_mode_over_stdin(tmp_path: Path, fake: FakeBotAPI) -> None:
    env = process_env(fake, tmp_path)
    del env["TELEGRAM_BOT_TOKEN"]
    done = subprocess.run(
        [*BOT, "--console"],
        env=env,
        input="/status\n/tail demo 5\n/tail nope\n",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "2 workflows" in done.stdout
    assert "demo log" in done.stdout
    assert "unknown workflow 'nope'; known: worker, demo" in done.stdout
    assert "Traceback" not in done.stderr
    assert not fake.calls  # the console never talks to Telegram


def test_an_invalid_token_is_a_clear_line_and_a_retry(tmp_path: Path) -> None:
    with FakeBotAPI("999:OTHER") as other:
        bot = start(process_env(other, tmp_path))
        lines: list[str] = []
        assert bot.stderr is not None
        reader = threading.Thread(target=lambda: lines.extend(bot.stderr or ()), daemon=True)
        reader.start()
        try:
            deadline = time.monotonic() + 10
            while sum("cannot use the Telegram API" in line for line in list(lines)) < 2:
                assert time.monotonic() < deadline, lines
                time.sleep(0.05)
        finally:
            bot.send_signal(signal.SIGTERM)
            code = bot.wait(timeout=30)
            reader.join(timeout=5)
    err = "".join(lines)
    assert code == 0, err
    assert "the token was rejected (check TELEGRAM_BOT_TOKEN)" in err
    assert "retrying in" in err
    assert "Traceback" not in err
    assert TOKEN.split(":")[1] not in err
    assert os.path.exists(tmp_path / "data")


def test_workflows_run_while_telegram_is_unreachable_and_alerts_wait(
    tmp_path: Path, fake: FakeBotAPI
) -> None:
    fake.set_down(True)
    bot = start(process_env(fake, tmp_path))
    try:
        deadline = time.monotonic() + 10
        while not workflow_pids(bot):  # the supervisor does not wait for Telegram
            assert time.monotonic() < deadline, "no workflow started while Telegram was down"
            time.sleep(0.05)
        assert fake.sent_matching() == []
        fake.set_down(False)
        fake.wait_for_sent_sync(
            is_alert("bot up"), timeout=BOT_START_SECONDS
        )  # queued, then delivered
        fake.add_message("/status", COMMAND_CHAT, USER)
        fake.wait_for_sent_sync(lambda m: m.chat_id == COMMAND_CHAT, timeout=30)
    finally:
        code, err = terminate(bot)
    assert code == 0, err
    assert "Traceback" not in err
