"""HEALTHCHECK_PING_URL: the bot pings a Healthchecks.io-style URL from its event loop.

A real HTTP server on 127.0.0.1 records the pings; the check's UUID in the
URL is a secret, so it must never reach the log.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.healthcheck import Pinger
from bot.lifecycle import RunRecord
from bot.redact import install_redaction
from supervisor.dbengine import make_engine
from tests.bot_harness import bot_running
from tests.fakes.pings import CHECK, PingServer
from tests.supervisor_harness import settings

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def pings() -> Iterator[PingServer]:
    with PingServer() as server:
        yield server


async def test_the_bot_pings_start_then_every_period(tmp_path: Path, pings: PingServer) -> None:
    async with bot_running(tmp_path, healthcheck_ping_url=pings.url, healthcheck_ping_seconds=0.2):
        seen = await asyncio.to_thread(pings.wait_for, "", 3)
    assert seen[0] == "start"
    assert "fail" not in seen


async def test_an_unclean_stop_pings_fail_before_start(tmp_path: Path, pings: PingServer) -> None:
    engine = make_engine(settings(tmp_path).control_db_url)
    RunRecord(engine).begin(now=1_000_000.0)  # a run that never got to stop cleanly
    engine.dispose()
    async with bot_running(tmp_path, healthcheck_ping_url=pings.url):
        seen = await asyncio.to_thread(pings.wait_for, "start")
    assert seen[:2] == ["fail", "start"]


async def test_a_failing_ping_is_logged_once_per_outage_and_never_with_the_url(
    pings: PingServer, caplog: pytest.LogCaptureFixture
) -> None:
    install_redaction([pings.url])  # as ``python -m bot`` does: httpx quiet, the URL a secret
    caplog.set_level(logging.DEBUG)
    pinger = Pinger(pings.url, every=0.05)
    pings.set_down()
    pinger.start(previous_failed=False)
    try:
        await asyncio.to_thread(pings.wait_for, "", 4)
        pings.set_down(False)
        plain = pings.count("")
        await asyncio.to_thread(pings.wait_for, "", plain + 3)
        pings.set_down()
        await asyncio.to_thread(pings.wait_for, "", plain + 6)
    finally:
        await pinger.stop()
    ours = [r.getMessage() for r in caplog.records if r.name == "bot.healthcheck"]
    failed = (
        "healthcheck ping to 127.0.0.1 failed (HTTPStatusError 500); logged once until a ping works"
    )
    assert ours == [failed, "healthcheck pings to 127.0.0.1 work again", failed]
    assert CHECK not in caplog.text
    assert CHECK.strip("/") not in caplog.text


async def test_an_unreachable_ping_host_never_delays_or_stops_the_bot(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with PingServer() as gone:
        url = gone.url  # a port nobody listens on once the server is stopped
    async with bot_running(tmp_path, healthcheck_ping_url=url) as rig:
        assert "2 workflows" in await rig.ask("/status")
    assert CHECK not in caplog.text
