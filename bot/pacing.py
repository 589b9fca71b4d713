"""How fast, and in what shape, the outbox may talk to Telegram (alerts and replies alike).

Telegram throttles bots per chat (about one message a second in a private
chat, twenty a minute in a group) and overall (about thirty a second), and
answers a faster bot with 429 ``retry_after``. The pacer remembers when each
chat may next be written to, so the outbox worker sleeps instead of collecting
429s; its clock is injected, so these rules are tested without sleeping. A
burst that outruns the limits is coalesced instead: waiting alerts are merged
into one message, and alerts held while muted become one summary.
"""

from __future__ import annotations

import json
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from bot.text import TELEGRAM_LIMIT, Button, Message, clip, esc
from bot.transport import ChatTarget, html_to_text

GLOBAL_WINDOW_SECONDS = 1.0
BLANK_LINE = "\n\n"
SUMMARY_LINE_LIMIT = 200
SUMMARY_TAIL_RESERVE = 40  # room for the "… and K more" line


@dataclass(frozen=True, slots=True)
class Pacing:
    per_chat_seconds: float = 1.0  # ~1 msg/s per private chat
    per_group_seconds: float = 3.0  # 20/min per group (chat_id < 0)
    global_per_second: float = 30.0
    gather_seconds: float = 0.0  # hold new mergeable alerts this long so bursts coalesce
    max_backoff_seconds: float = 60.0
    reply_burst: int = 3  # a reply may run this many messages ahead of the chat's spacing

    def interval(self, target: ChatTarget) -> float:
        """The least time between two requests to ``target``."""
        return self.per_group_seconds if target.is_group else self.per_chat_seconds


def backoff(pacing: Pacing, attempts: int) -> float:
    """Seconds to wait after the ``attempts``-th failure: 1, 2, 4 ... capped."""
    return float(min(2.0 ** max(attempts - 1, 0), pacing.max_backoff_seconds))


class Pacer:
    """Per-chat spacing, ``retry_after`` holds and a global one-second window.

    A burst of ``burst`` requests may run ahead of a chat's spacing (Telegram
    tolerates short bursts, and a user waits for all of a long ``/status``);
    the chat pays it back, since every request pushes its next slot on by one
    interval. Nothing runs ahead of a hold.
    """

    def __init__(self, pacing: Pacing, clock: Callable[[], float] = time.monotonic) -> None:
        self.pacing = pacing
        self._clock = clock
        self._chat_ready_at: dict[int, float] = {}
        self._held_until: dict[int, float] = {}
        self._recent: deque[float] = deque()
        self._global_limit = max(int(pacing.global_per_second), 1)

    def ready_in(self, target: ChatTarget, *, burst: int = 1) -> float:
        """Seconds until the next request to ``target`` may go (0 means now)."""
        now = self._clock()
        while self._recent and self._recent[0] <= now - GLOBAL_WINDOW_SECONDS:
            self._recent.popleft()
        ahead = (max(burst, 1) - 1) * self.pacing.interval(target)
        spaced_at = self._chat_ready_at.get(target.chat_id, now) - ahead
        wait = max(spaced_at, self._held_until.get(target.chat_id, now)) - now
        if len(self._recent) >= self._global_limit:
            wait = max(wait, self._recent[0] + GLOBAL_WINDOW_SECONDS - now)
        return max(wait, 0.0)

    def record(self, target: ChatTarget) -> None:
        """A request to ``target`` is being made now."""
        now = self._clock()
        self._recent.append(now)
        slot = max(self._chat_ready_at.get(target.chat_id, now), now)
        self._chat_ready_at[target.chat_id] = slot + self.pacing.interval(target)

    def hold(self, target: ChatTarget, seconds: float) -> None:
        """Telegram said to wait: nothing goes to this chat for ``seconds``."""
        until = self._clock() + seconds
        self._held_until[target.chat_id] = max(self._held_until.get(target.chat_id, until), until)


@dataclass(frozen=True, slots=True)
class OutboxRow:
    """The parts of a pending outbox row that shape its message and its place in line."""

    id: int
    key: str | None
    text: str
    buttons: str
    loud: bool
    mergeable: bool
    target: ChatTarget | None = None  # None: the alert chat
    urgent: bool = False  # a command's reply: before alerts, and may burst (``Pacing``)
    due_at: float = 0.0  # epoch seconds it may be tried

    @property
    def merges(self) -> bool:
        return self.mergeable and self.key is None


@dataclass(frozen=True, slots=True)
class Batch:
    """One chat message carrying one or more rows."""

    rows: tuple[OutboxRow, ...]
    message: Message
    silent: bool

    @property
    def key(self) -> str | None:
        return self.rows[0].key if len(self.rows) == 1 else None


def first_line(text: str) -> str:
    """The first non-empty line of an HTML text, as plain text."""
    lines = html_to_text(text).strip().splitlines()
    return lines[0] if lines else ""


def _header(count: int) -> str:
    return f"<b>{count} alerts</b>"


def fit_batch(rows: Sequence[OutboxRow]) -> list[OutboxRow]:
    """The leading rows whose texts fit one message under a count header."""
    kept = [rows[0]]
    size = len(rows[0].text)
    for row in rows[1:]:
        grown = size + len(BLANK_LINE) + len(row.text)
        if len(_header(len(kept) + 1)) + len(BLANK_LINE) + grown > TELEGRAM_LIMIT:
            break
        kept.append(row)
        size = grown
    return kept


def compose(rows: Sequence[OutboxRow]) -> Batch:
    """The message for ``rows``: the alert itself, or a merged list without buttons."""
    if len(rows) == 1:
        row = rows[0]
        return Batch(tuple(rows), Message(row.text, decode_buttons(row.buttons)), not row.loud)
    text = BLANK_LINE.join([_header(len(rows)), *(row.text for row in rows)])
    return Batch(tuple(rows), Message(text), not any(row.loud for row in rows))


def summary_text(texts: Sequence[str]) -> str:
    """'While muted: N alerts' and the first line of each, as many as fit one message."""
    lines = [f"<b>While muted: {len(texts)} alert{'' if len(texts) == 1 else 's'}</b>"]
    size = len(lines[0])
    for index, text in enumerate(texts):
        line = "• " + esc(clip(first_line(text), SUMMARY_LINE_LIMIT))
        if size + 1 + len(line) + SUMMARY_TAIL_RESERVE > TELEGRAM_LIMIT:
            lines.append(f"… and {len(texts) - index} more")
            break
        lines.append(line)
        size += 1 + len(line)
    return "\n".join(lines)


def encode_buttons(buttons: tuple[Button, ...]) -> str:
    return json.dumps([[button.label, button.data] for button in buttons])


def decode_buttons(raw: str) -> tuple[Button, ...]:
    return tuple(Button(label, data) for label, data in json.loads(raw))
