"""After a kill -9 the bot's hello says it was down and died; after a clean stop, how long.

The bot stamps its last-alive time in the control DB and marks a clean stop;
the next start reads them. One pure function composes the line, tested over
its cases; the end-to-end test SIGKILLs a real ``python -m bot``.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bot.lifecycle import PreviousRun, downtime_note
from tests.bot_harness import BOT_START_SECONDS, TOKEN, bot_running, is_alert, process_env
from tests.fakes.botapi import FakeBotAPI
from tests.fakes.pings import CHECK, PingServer
from tests.supervisor_harness import write_toml

pytestmark = pytest.mark.timeout(60)
NOW = datetime(2026, 11, 24, 3, 15, 40, tzinfo=UTC)
BEFORE = datetime(2026, 11, 24, 3, 12, 5, tzinfo=UTC)
SLEEP = "import time; time.sleep(600)"


@pytest.mark.parametrize(
    ("previous", "restarted", "note"),
    [
        (None, 0, None),
        (PreviousRun(clean=True, last_alive=BEFORE), 0, "bot was down 03:12–03:15 UTC"),
        (
            PreviousRun(clean=False, last_alive=BEFORE),
            4,
            "bot was down 03:12–03:15 UTC, unclean stop; 4 workflows restarted and resumed",
        ),
        (
            PreviousRun(clean=False, last_alive=BEFORE),
            1,
            "bot was down 03:12–03:15 UTC, unclean stop; 1 workflow restarted and resumed",
        ),
        (
            PreviousRun(clean=False, last_alive=BEFORE),
            0,
            "bot was down 03:12–03:15 UTC, unclean stop",
        ),
        (
            PreviousRun(clean=True, last_alive=datetime(2026, 11, 22, 23, 59, tzinfo=UTC)),
            0,
            "bot was down 11-22 23:59–03:15 UTC",
        ),
    ],
)
def test_downtime_note(previous: PreviousRun | None, restarted: int, note: str | None) -> None:
    assert downtime_note(previous, NOW, restarted) == note


async def test_a_clean_stop_then_start_says_only_how_long_it_was_down(tmp_path: Path) -> None:
    async with bot_running(tmp_path) as first:
        [hello] = first.fake.sent_matching(is_alert("bot up"))
        assert "bot was down" not in hello.text  # the first start ever
    async with bot_running(tmp_path) as second:
        [hello] = second.fake.sent_matching(is_alert("bot up"))
    assert "\nbot was down " in hello.text
    assert "unclean" not in hello.text


@pytest.fixture
def fake() -> Iterator[FakeBotAPI]:
    with FakeBotAPI(TOKEN) as server:
        yield server


def test_after_kill_9_the_hello_says_unclean_stop_and_the_check_hears_fail(
    tmp_path: Path, fake: FakeBotAPI
) -> None:
    log = tmp_path / "bot.log"
    # Silent, so it outlives the killed bot (a print into the dead pipe would end it).
    sleeper = {"name": "sleeper", "command": [sys.executable, "-c", SLEEP], "db": "sleeper.db"}
    with PingServer() as pings, log.open("w") as stderr:
        env = process_env(
            fake,
            tmp_path,
            SUPERVISOR_CONFIG=str(write_toml(tmp_path / "sleeper.toml", [sleeper])),
            HEALTHCHECK_PING_URL=pings.url,
            HEALTHCHECK_PING_SECONDS="0.2",
        )
        bot = subprocess.Popen([sys.executable, "-m", "bot"], env=env, stderr=stderr)
        try:
            # The hello comes after the workflows started and their pid files were written.
            fake.wait_for_sent_sync(is_alert("bot up"), timeout=BOT_START_SECONDS)
            pings.wait_for("start")
        finally:
            bot.kill()
            bot.wait(timeout=10)
        again = subprocess.Popen([sys.executable, "-m", "bot"], env=env, stderr=stderr)
        try:
            # Not the second "bot up": the first may come again (the outbox's duplicate window).
            [hello] = fake.wait_for_sent_sync(is_alert("bot was down"), timeout=15)
            seen = pings.wait_for("start", count=2)
        finally:
            again.terminate()
            again.wait(timeout=15)
    assert again.returncode == 0, log.read_text()
    assert hello.text.startswith("🟢 bot up on ")
    assert ", unclean stop; " in hello.text
    assert hello.text.endswith(", unclean stop; 1 workflow restarted and resumed")
    assert seen.count("fail") == 1
    assert seen[seen.index("fail") :][:2] == ["fail", "start"]
    assert CHECK not in log.read_text()
