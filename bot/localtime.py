"""Moments as a person in ``ALERT_TIMEZONE`` reads them, always with the zone named.

A bare ``03:12`` woken at night is ambiguous (the server's zone? UTC? mine?),
so every time shown in the chat goes through ``local_time``, which always
says which zone it means, and adds the date when the moment is not today.
"""

from __future__ import annotations

from datetime import datetime, time, tzinfo

from bot.text import format_duration


def clock_time(text: str) -> time:
    """``HH:MM`` (24-hour) as a time of day; ``ValueError`` says what works."""
    try:
        hours, minutes = text.strip().split(":")
        if len(hours) != 2 or len(minutes) != 2:
            raise ValueError(text)
        return time(int(hours), int(minutes))
    except ValueError as exc:
        raise ValueError(f"bad time {text!r}: use HH:MM, like 09:00") from exc


def _label(moment: datetime) -> str:
    """The zone's abbreviation (CET, UTC); zones without one (``+03``) read as UTC+03."""
    name = moment.tzname() or ""
    return f"UTC{name}" if name[:1] in "+-" else name


def local_time(moment: float, tz: tzinfo, now: float) -> str:
    """``03:12 CET`` today (in ``tz``), ``24 Nov 03:12 CET`` this year, else with the year."""
    local, today = datetime.fromtimestamp(moment, tz), datetime.fromtimestamp(now, tz).date()
    shown = f"{local:%H:%M} {_label(local)}"
    if local.date() == today:
        return shown
    return f"{local:%d %b}{'' if local.year == today.year else f' {local.year}'} {shown}"


def happened_note(happened_at: float, now: float, tz: tzinfo) -> str:
    """``happened at 03:12 CET, 41m ago``: for a message that arrives well after its event."""
    ago = format_duration(now - happened_at)
    return f"happened at {local_time(happened_at, tz, now)}, {ago} ago"
