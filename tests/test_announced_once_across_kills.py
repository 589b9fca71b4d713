"""S6 and B2 at every instant: an error is announced exactly once, wherever a kill -9 lands.

Between a workflow writing an error and its alert reaching the chat there are
three commits: the supervisor's (the error is seen, its event recorded), the
bot's (alerts in the outbox, its cursor past the event) and the outbox's
(sent). The bot kills itself just before and just after the first two
(``SUPERVISOR_FAULT``, ``supervisor/faults.py``); after the restart the alert
arrives, once.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

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
from tests.test_bot_process import start, terminate

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def fake() -> Iterator[FakeBotAPI]:
    with FakeBotAPI(TOKEN) as server:
        yield server


@pytest.mark.parametrize(
    "instant",
    [
        "before-event-commit:error",  # seen, not yet recorded: read again after the restart
        "before-alert-commit:error",  # recorded, not yet an alert: replayed from the log
        "after-alert-commit:error",  # in the outbox, not yet sent: delivered after the restart
    ],
)
def test_an_error_is_announced_exactly_once_whatever_instant_the_bot_is_killed_at(
    tmp_path: Path, fake: FakeBotAPI, instant: str
) -> None:
    doomed = start(process_env(fake, tmp_path, SUPERVISOR_FAULT=instant))
    try:
        fake.wait_for_sent_sync(is_alert("bot up"), timeout=BOT_START_SECONDS)
        order(tmp_path, "worker", error="written at the worst instant")
        assert doomed.wait(30) == -signal.SIGKILL
    finally:
        if doomed.poll() is None:
            doomed.kill()
        doomed.communicate(timeout=10)
    assert fake.sent_matching(is_alert("worst instant")) == []
    # The restarted worker must not write the error again: a second write is news (S6), and
    # whether it lands before or after the new bot's first read would decide the count.
    order(tmp_path, "worker")
    again = start(process_env(fake, tmp_path))
    try:
        fake.wait_for_sent_sync(is_alert("written at the worst instant"), timeout=30)
        fake.wait_for_sent_sync(is_alert("unclean stop"), timeout=10)
        fake.add_message("/status", COMMAND_CHAT, USER)  # a round trip after everything queued
        fake.wait_for_sent_sync(lambda m: m.chat_id == COMMAND_CHAT, timeout=10)
    finally:
        code, err = terminate(again)
    assert code == 0, err
    assert len(fake.sent_matching(is_alert("written at the worst instant"))) == 1
