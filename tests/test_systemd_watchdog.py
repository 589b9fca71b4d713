"""The running bot says READY, pings the watchdog from its event loop, and says STOPPING."""

from __future__ import annotations

import asyncio
import os
import socket
import tempfile
from pathlib import Path

import pytest

from bot.systemd import SystemdNotifier
from tests.bot_harness import bot_running, worker_table

pytestmark = pytest.mark.timeout(20)


def _received(sock: socket.socket) -> list[str]:
    messages = []
    while True:
        try:
            messages.append(sock.recv(4096).decode())
        except BlockingIOError:
            return messages


async def test_ready_watchdog_pings_and_stopping(tmp_path: Path) -> None:
    # AF_UNIX paths are limited to about 108 bytes; pytest's tmp_path can be longer.
    address = Path(tempfile.mkdtemp(prefix="sd", dir="/tmp")) / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(address))
        sock.setblocking(False)
        environ = {
            "NOTIFY_SOCKET": str(address),
            "WATCHDOG_USEC": "200000",  # 0.2 s: the bot pings every 0.1 s
            "WATCHDOG_PID": str(os.getpid()),
        }
        async with bot_running(
            tmp_path, [worker_table(tmp_path, "w")], systemd=SystemdNotifier(environ)
        ) as rig:
            await rig.ask("/status")
            await asyncio.sleep(0.5)
            while_running = _received(sock)
        after = _received(sock)
    assert "READY=1" in while_running
    assert while_running.count("WATCHDOG=1") >= 3
    assert "STOPPING=1" in after
