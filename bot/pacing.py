"""How fast the alert outbox may talk to Telegram.

Telegram throttles bots per chat (about one message a second in a private
chat, twenty a minute in a group) and overall (about thirty a second), and
answers a faster bot with 429 ``retry_after``. The pacer remembers when each
chat may next be written to, so the outbox worker sleeps instead of collecting
429s. Its clock is injected, so these rules are tested without sleeping.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from bot.transport import ChatTarget

GLOBAL_WINDOW_SECONDS = 1.0


@dataclass(frozen=True, slots=True)
class Pacing:
    per_chat_seconds: float = 1.0  # ~1 msg/s per private chat
    per_group_seconds: float = 3.0  # 20/min per group (chat_id < 0)
    global_per_second: float = 30.0
    gather_seconds: float = 0.0  # hold new mergeable alerts this long so bursts coalesce
    max_backoff_seconds: float = 60.0

    def interval(self, target: ChatTarget) -> float:
        """The least time between two requests to ``target``."""
        return self.per_group_seconds if target.is_group else self.per_chat_seconds


def backoff(pacing: Pacing, attempts: int) -> float:
    """Seconds to wait after the ``attempts``-th failure: 1, 2, 4 ... capped."""
    return float(min(2.0 ** max(attempts - 1, 0), pacing.max_backoff_seconds))


class Pacer:
    """Per-chat spacing, ``retry_after`` holds and a global one-second window."""

    def __init__(self, pacing: Pacing, clock: Callable[[], float] = time.monotonic) -> None:
        self.pacing = pacing
        self._clock = clock
        self._chat_ready_at: dict[int, float] = {}
        self._recent: deque[float] = deque()
        self._global_limit = max(int(pacing.global_per_second), 1)

    def ready_in(self, target: ChatTarget) -> float:
        """Seconds until the next request to ``target`` may go (0 means now)."""
        now = self._clock()
        while self._recent and self._recent[0] <= now - GLOBAL_WINDOW_SECONDS:
            self._recent.popleft()
        wait = self._chat_ready_at.get(target.chat_id, now) - now
        if len(self._recent) >= self._global_limit:
            wait = max(wait, self._recent[0] + GLOBAL_WINDOW_SECONDS - now)
        return max(wait, 0.0)

    def record(self, target: ChatTarget) -> None:
        """A request to ``target`` is being made now."""
        now = self._clock()
        self._recent.append(now)
        self._push(target.chat_id, now + self.pacing.interval(target))

    def hold(self, target: ChatTarget, seconds: float) -> None:
        """Telegram said to wait: nothing goes to this chat for ``seconds``."""
        self._push(target.chat_id, self._clock() + seconds)

    def _push(self, chat_id: int, ready_at: float) -> None:
        self._chat_ready_at[chat_id] = max(self._chat_ready_at.get(chat_id, ready_at), ready_at)
