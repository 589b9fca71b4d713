"""Shutting down mid-poll leaves no job error behind (the scheduler cancels running jobs)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from tests.supervisor_harness import resolve, running, settings, table

pytestmark = pytest.mark.timeout(30)


async def test_shutdown_while_state_reads_are_in_flight_logs_no_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR)
    conf = settings(tmp_path, error_poll_seconds=0.001, check_interval_seconds=0.001)
    flows = resolve(tmp_path, conf, table(tmp_path, "busy", plan={"every": 0.001}))
    for _ in range(10):
        async with running(conf, flows):
            await asyncio.sleep(0.05)
    failures = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert failures == []
