"""The bot's event loop never waits on the control DB.

The loop also polls Telegram, answers commands and feeds the systemd
watchdog, and a SQLite control DB may be locked for its whole busy timeout
(5 s) by another process. So while another connection holds the database
locked, the loop must keep running: here a heartbeat task keeps ticking
while an alert is enqueued and a refused command is handled (its audit
record and its reply are both writes). Both wait for the lock in a thread,
and are delivered once it is released.
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from bot.outbox import Alert
from tests.bot_harness import COMMAND_CHAT, USER, BotRig, bot_running, is_alert
from tests.conditions import wait_until

LOCKED_SECONDS = 1.5  # well under the 5 s busy timeout: the writes wait, then succeed
TICK_SECONDS = 0.02
MAX_GAP_SECONDS = 0.2  # the loop may be busy for a moment, never for the lock's duration


async def heartbeat(gaps: list[float]) -> None:
    """Tick forever, noting how long each tick really took."""
    loop = asyncio.get_running_loop()
    last = loop.time()
    while True:
        await asyncio.sleep(TICK_SECONDS)
        now = loop.time()
        gaps.append(now - last)
        last = now


def lock(rig: BotRig) -> sqlite3.Connection:
    """Another connection takes the control DB's write lock and keeps it."""
    path = rig.supervisor.settings.control_db_url.removeprefix("sqlite:///")
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    return holder


def taken(rig: BotRig, update_id: int) -> bool:
    """True once the bot has fetched the update (it asks for the ones after it)."""
    return any(
        method == "getUpdates" and int(params.get("offset", 0)) > update_id
        for method, params in list(rig.fake.calls)
    )


async def test_a_locked_database_stalls_neither_alerts_nor_commands_nor_the_loop(
    tmp_path: Path,
) -> None:
    async with bot_running(tmp_path, []) as rig:
        gaps: list[float] = []
        ticking = asyncio.create_task(heartbeat(gaps))
        holder = lock(rig)
        try:
            alerting = asyncio.create_task(rig.bot.service.notifier.enqueue(Alert("disk full")))
            update_id = rig.fake.add_message("/stop ghost", COMMAND_CHAT, USER)
            await wait_until(lambda: taken(rig, update_id))
            await asyncio.sleep(LOCKED_SECONDS)  # load shape: how long the lock is held
            ticking.cancel()
            assert len(gaps) > LOCKED_SECONDS / MAX_GAP_SECONDS
            assert max(gaps) < MAX_GAP_SECONDS, f"the loop stalled for {max(gaps):.2f} s"
            assert not alerting.done()  # its commit really is waiting for the lock
        finally:
            holder.execute("COMMIT")
            holder.close()
        await alerting
        await rig.alert("disk full")
        [reply] = await rig.fake.wait_for_sent(lambda m: m.chat_id == COMMAND_CHAT)
    assert "unknown workflow" in reply.text
    assert len(rig.fake.sent_matching(is_alert("disk full"))) == 1
