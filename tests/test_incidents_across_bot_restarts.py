"""S5 and S11 through the chat: what a bot restart in the middle of an incident looks like.

An incident open when the bot restarts goes on in its own message, with the
right counts, and is closed there (never left at "waiting for a heartbeat");
a workflow that gave up stays given up, with no new messages, until /start.
"""

from __future__ import annotations

from pathlib import Path

from tests.bot_harness import TOKEN, bot_running, is_alert, worker_table
from tests.fakes.botapi import FakeBotAPI
from tests.test_chat_alerts import wait_edit


async def test_an_incident_open_at_a_bot_restart_continues_and_closes_in_its_message(
    tmp_path: Path,
) -> None:
    tables = [worker_table(tmp_path, restart_backoff_seconds=[60])]
    with FakeBotAPI(TOKEN) as fake:
        async with bot_running(tmp_path, tables, fake=fake) as rig:
            await rig.wait_state("worker", "running")
            rig.order("worker", exit=3)
            [crash] = await rig.alert("💥 <b>worker</b> crashed: exit code 3")
            assert "next in 1m" in crash.text
            rig.order("worker")  # the next process behaves
        # Restarted while the incident waited a minute for its restart: made at start-up.
        async with bot_running(tmp_path, tables, fake=fake) as rig:
            await fake.wait_for_sent(is_alert("bot up"), count=2)
            await wait_edit(crash, "restarted, attempt 1/1; waiting for a heartbeat")
            await wait_edit(crash, "recovered after")
            assert "crashed: exit code 3" in crash.edits[-1]
            await rig.alert("✅ <b>worker</b> recovered after")
        assert len(fake.sent_matching(is_alert("crashed"))) == 1


async def test_a_give_up_stays_given_up_across_bot_restarts_until_start(tmp_path: Path) -> None:
    tables = [worker_table(tmp_path, max_restart_attempts=0)]
    with FakeBotAPI(TOKEN) as fake:
        async with bot_running(tmp_path, tables, fake=fake) as rig:
            await rig.wait_state("worker", "running")
            rig.order("worker", exit=4)
            await rig.alert("gave up")
            rig.order("worker")
        for run in (2, 3):
            async with bot_running(tmp_path, tables, fake=fake) as rig:
                await fake.wait_for_sent(is_alert("bot up"), count=run)
                await rig.wait_state("worker", "gave_up")
                reply = await rig.ask("/status worker")
                assert "gave up" in reply or "gave_up" in reply
        assert len(fake.sent_matching(is_alert("It waits for /start"))) == 1
        assert len(fake.sent_matching(is_alert("crashed"))) == 1
        async with bot_running(tmp_path, tables, fake=fake) as rig:
            await fake.wait_for_sent(is_alert("bot up"), count=4)
            await rig.ask("/start worker")
            await rig.wait_state("worker", "running")
            [incident] = fake.sent_matching(is_alert("crashed"))
            await wait_edit(incident, "started by hand")
