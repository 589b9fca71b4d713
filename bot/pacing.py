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
from typing import TypeAlias

from bot.text import TELEGRAM_LIMIT, Button, Message, clip, esc
from bot.transport import ChatTarget, html_to_text

GLOBAL_WINDOW_SECONDS = 1.0
BLANK_LINE = "\n\n"
SUMMARY_LINE_LIMIT = 200
SUMMARY_TAIL_RESERVE = 40  # room for the "… and K more" line
# Telegram's inline keyboard limits.
MAX_CALLBACK_BYTES = 64
MAX_BUTTONS = 100


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
    workflow: str | None = None  # whose alert: a merged message gives its buttons a row
    happened_at: float | None = None  # epoch seconds of its event: a late one says when

    @property
    def merges(self) -> bool:
        return self.mergeable and self.key is None


Shown: TypeAlias = Callable[[OutboxRow], str]  # a row's text as it goes out


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


def as_written(row: OutboxRow) -> str:
    return row.text


def fit_batch(rows: Sequence[OutboxRow], shown: Shown = as_written) -> list[OutboxRow]:
    """The leading rows whose texts, as ``shown``, fit one message under a count header."""
    kept = [rows[0]]
    size = len(shown(rows[0]))
    for row in rows[1:]:
        grown = size + len(BLANK_LINE) + len(shown(row))
        if len(_header(len(kept) + 1)) + len(BLANK_LINE) + grown > TELEGRAM_LIMIT:
            break
        kept.append(row)
        size = grown
    return kept


def compose(rows: Sequence[OutboxRow], shown: Shown = as_written) -> Batch:
    """The message for ``rows``: the alert itself, or a merged list that keeps their buttons.

    ``shown`` is a row's text as it goes out (``bot.notices.SendTime`` adds
    when a late alert happened). The message is loud iff one of its alerts is:
    sound follows severity, never how alerts were grouped.
    """
    silent = not any(row.loud for row in rows)
    if len(rows) == 1:
        row = rows[0]
        return Batch(tuple(rows), Message(shown(row), decode_buttons(row.buttons)), silent)
    text = BLANK_LINE.join([_header(len(rows)), *(shown(row) for row in rows)])
    return Batch(tuple(rows), Message(text, merged_buttons(rows)), silent)


def merged_buttons(rows: Sequence[OutboxRow]) -> tuple[Button, ...]:
    """Each merged alert's buttons, grouped by workflow, within Telegram's limits.

    ``bot.transport.button_rows`` lays neighbours acting on one workflow out
    as a row, so the groups become one row per workflow. A button is labelled
    with its workflow (two "Restart" buttons in one message must say which is
    which), repeats are shown once, and what Telegram would refuse is left
    out rather than failing the message: ``callback_data`` over 64 bytes, or
    more than 100 buttons in all.
    """
    by_workflow: dict[str | None, list[Button]] = {}
    for row in rows:
        group = by_workflow.setdefault(row.workflow, [])
        for button in decode_buttons(row.buttons):
            label = f"{button.label} {row.workflow}" if row.workflow else button.label
            labelled = Button(label, button.data)
            if len(button.data.encode()) <= MAX_CALLBACK_BYTES and labelled not in group:
                group.append(labelled)
    flat = [button for group in by_workflow.values() for button in group]
    return tuple(flat[:MAX_BUTTONS])


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
