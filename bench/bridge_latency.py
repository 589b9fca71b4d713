"""How fast the agent bridge shows it is working: a message in, the progress message out.

The promise is that a person who writes to the agent sees at once that it
is on it: the time from a text message arriving at the stand-in Bot API to
the bot's first progress message (goal p99 < 1 s with the stand-ins), and
to the answer when the stand-in Messages endpoint answers at once (one tool
round). Everything is real: ``TelegramBot`` over a real ``Supervisor``,
python-telegram-bot speaking HTTP to ``FakeBotAPI``, the anthropic SDK to
``FakeMessagesAPI``. Prints figures beside their goals; asserts nothing.

    python bench/bridge_latency.py [--samples N]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.bot_harness import COMMAND_CHAT, USER, bot_running, worker_table  # noqa: E402
from tests.fakes.botapi import SentMessage  # noqa: E402
from tests.fakes.messages_api import FakeMessagesAPI  # noqa: E402

GOAL_FIRST_PROGRESS_P99 = 1.0
# Turns in one session are one at a time and the outbox paces a chat, so samples are
# spaced as a person's messages are.
GAP_SECONDS = 1.0


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


async def measure(samples: int) -> tuple[list[float], list[float]]:
    firsts: list[float] = []
    answers: list[float] = []
    with tempfile.TemporaryDirectory() as tmp, FakeMessagesAPI() as claude:
        os.environ["ANTHROPIC_API_KEY"] = "sk-ant-bench-not-a-real-key"
        os.environ["ANTHROPIC_BASE_URL"] = claude.base_url
        tmp_path = Path(tmp)
        async with bot_running(tmp_path, [worker_table(tmp_path)]) as rig:
            for n in range(samples):
                claude.queue_tool_use("status", {}, f"toolu_{n}")
                claude.queue_reply(f"answer {n}")
                seen = {m.message_id for m in rig.fake.sent_matching()}
                started = time.perf_counter()
                rig.fake.add_message(f"/ask worker question {n}", COMMAND_CHAT, USER)
                await rig.fake.wait_for_sent(_new(seen, "🤖"), 1, 30)
                firsts.append(time.perf_counter() - started)
                await rig.fake.wait_for_sent(_new(seen, f"answer {n}"), 1, 30)
                answers.append(time.perf_counter() - started)
                await asyncio.sleep(GAP_SECONDS)
    return firsts, answers


def _new(seen: set[int], text: str) -> Callable[[SentMessage], bool]:
    """A message sent after ``seen`` that shows ``text``."""
    return lambda m: m.message_id not in seen and text in m.text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=30)
    options = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)  # apscheduler's skipped-run notes are noise here
    firsts, answers = asyncio.run(measure(options.samples))
    print(f"bridge latency over {len(firsts)} messages (one tool round each)")
    print(
        f"  message -> first progress message: p50 {statistics.median(firsts):.3f} s, "
        f"p99 {percentile(firsts, 0.99):.3f} s (goal p99 < {GOAL_FIRST_PROGRESS_P99:.1f} s)"
    )
    print(
        f"  message -> answer:                 p50 {statistics.median(answers):.3f} s, "
        f"p99 {percentile(answers, 0.99):.3f} s"
    )


if __name__ == "__main__":
    main()
