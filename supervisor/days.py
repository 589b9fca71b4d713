"""Days as the person reading the chat lives them: in ``ALERT_TIMEZONE``, from midnight.

A budget per day, and the spend shown as "today", start at local midnight,
not at UTC's; one place says where a day begins so ``/cost``, the budgets and
the daily cap agree.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


def zone(name: str) -> ZoneInfo:
    """The IANA time zone ``name``; ``ValueError`` names it when no such zone exists."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        hint = "use an IANA name like Europe/Berlin"
        raise ValueError(f"unknown time zone {name!r}: {hint}") from exc


def day_of(moment: datetime, tz: tzinfo) -> str:
    """The local date of ``moment`` (aware) in ``tz``, as ``YYYY-MM-DD``."""
    return moment.astimezone(tz).date().isoformat()


def days_before(day: str, count: int) -> str:
    """The date ``count`` days before ``day`` (both ``YYYY-MM-DD``)."""
    return (date.fromisoformat(day) - timedelta(days=count)).isoformat()


def next_midnight(moment: datetime, tz: tzinfo) -> datetime:
    """When the day after ``moment``'s begins in ``tz`` (aware, in ``tz``)."""
    tomorrow = moment.astimezone(tz).date() + timedelta(days=1)
    return datetime.combine(tomorrow, time(0), tzinfo=tz)
