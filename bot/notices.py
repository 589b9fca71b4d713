"""What the outbox itself says about the alerts it carries: lateness, reminders, held incidents.

Pure functions of rows, a moment and a time zone, so the rules are tested
without a worker: an alert that reaches the chat more than ``LATE_SECONDS``
after its event says when it happened (only the worker knows when it is sent,
so this is added at send time and never stored); a reminder repeats an alert
nobody acknowledged and says how long ago it happened; and the alerts held by
a mute are listed once per incident, a crash that recovered meanwhile as one
line.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import tzinfo

from bot.localtime import happened_note, local_time
from bot.pacing import OutboxRow, first_line
from bot.text import TELEGRAM_LIMIT, clip_html, esc

LATE_SECONDS = 30.0
RECOVERED = "recovered"  # the lead's recovered alert for an incident says so, under its key


def with_note(text: str, note: str) -> str:
    """``text`` and an italic ``note`` (plain text) under it, within Telegram's limit."""
    line = f"<i>{esc(note)}</i>"
    return f"{clip_html(text, TELEGRAM_LIMIT - len(line) - 1)}\n{line}"


@dataclass(frozen=True, slots=True)
class SendTime:
    """The moment a message goes out, which decides whether its alerts say when they happened."""

    now: float
    tz: tzinfo

    def shown(self, row: OutboxRow) -> str:
        """The row's text as delivered now: with ``happened at …`` if it is late."""
        if row.happened_at is None or self.now - row.happened_at <= LATE_SECONDS:
            return row.text
        return with_note(row.text, happened_note(row.happened_at, self.now, self.tz))


def reminder_text(text: str, happened_at: float, now: float, tz: tzinfo) -> str:
    """A loud repeat of an unacknowledged alert: what it is, when it happened, then the alert."""
    note = esc(happened_note(happened_at, now, tz))
    head = f"⏰ <b>Reminder</b>, not acknowledged: <i>{note}</i>"
    return f"{head}\n{clip_html(text, TELEGRAM_LIMIT - len(head) - 1)}"


@dataclass(frozen=True, slots=True)
class Held:
    """One alert a mute held: its incident key, text, and when it happened (epoch seconds)."""

    key: str | None
    text: str
    at: float


def held_incidents(held: Sequence[Held], now: float, tz: tzinfo) -> list[str]:
    """One text per incident, in the order the incidents began.

    Alerts sharing a key are one incident and read as its latest text; an
    incident whose latest text says it recovered reads as one line: what
    failed first, when, and when it recovered.
    """
    incidents: dict[object, list[Held]] = {}
    for index, alert in enumerate(sorted(held, key=lambda alert: alert.at)):
        incidents.setdefault(alert.key if alert.key is not None else index, []).append(alert)
    lines: list[str] = []
    for alerts in incidents.values():
        first, last = alerts[0], alerts[-1]
        if len(alerts) > 1 and RECOVERED in last.text and RECOVERED not in first.text:
            began, ended = local_time(first.at, tz, now), local_time(last.at, tz, now)
            lines.append(esc(f"{first_line(first.text)} — {began}, {RECOVERED} {ended}"))
        else:
            lines.append(last.text)
    return lines
