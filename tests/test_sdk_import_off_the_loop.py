"""The anthropic SDK takes a second or more to import: the first /why, bridge turn or fix
imports it in a worker thread, and the event loop (alerts, commands, the watchdog) goes on
turning meanwhile. Measured in a fresh interpreter, where the SDK is not imported yet."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

PROBE = r"""
import asyncio, json, sys, time
from supervisor.claudeclient import sdk_ready

async def main():
    assert "anthropic" not in sys.modules
    gaps, stop = [], False

    async def tick():
        last = time.perf_counter()
        while not stop:
            await asyncio.sleep(0.01)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    ticker = asyncio.create_task(tick())
    await asyncio.sleep(0.05)
    gaps.clear()
    started = time.perf_counter()
    await sdk_ready()
    took = time.perf_counter() - started
    stop = True
    await ticker
    print(json.dumps({"took": took, "ticks": len(gaps), "longest": max(gaps),
                      "imported": "anthropic" in sys.modules}))

asyncio.run(main())
"""


def test_the_sdk_is_imported_while_the_event_loop_goes_on() -> None:
    done = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    assert seen["imported"]
    # Imported on the loop, the loop would not tick at all until the import is done.
    assert seen["ticks"] >= 5, seen
    assert seen["longest"] < seen["took"] / 2, seen
