"""Text primitives every chat message is built from.

Telegram takes at most 4096 characters of HTML; dynamic strings are escaped
exactly once, here, and long texts are clipped so that the markup around them
stays intact.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass

TELEGRAM_LIMIT = 4096
ELLIPSIS = "…"
_DURATION = re.compile(r"^(\d+)([smhd])$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


@dataclass(frozen=True, slots=True)
class Button:
    """An inline button; ``data`` is ``action:argument`` (e.g. ``restart:demo``)."""

    label: str
    data: str


@dataclass(frozen=True, slots=True)
class Message:
    """A chat message ready to deliver: HTML text and inline buttons in one row."""

    text: str
    buttons: tuple[Button, ...] = ()


def esc(value: object) -> str:
    """Escape a dynamic value for Telegram's HTML parse mode."""
    return html.escape(str(value), quote=False)


def clip(text: str, limit: int) -> str:
    """Cut plain (unescaped) text to ``limit`` characters, marking the cut."""
    if len(text) <= limit:
        return text
    return text[: max(limit - 1, 0)] + ELLIPSIS


def clip_lines_from_top(lines: list[str], limit: int) -> str:
    """Join lines, dropping the oldest (and cutting an overlong last one) to fit ``limit``."""
    kept: list[str] = []
    size = 0
    for line in reversed(lines):
        if size + len(line) + 1 > limit:
            if not kept:
                kept.append(ELLIPSIS + line[-(limit - 1) :])
            break
        kept.append(line)
        size += len(line) + 1
    return "\n".join(reversed(kept))


def format_duration(seconds: float) -> str:
    """Human durations for chat: ``45s``, ``4m 12s``, ``2h 5m``, ``3d 4h``."""
    total = max(int(seconds), 0)
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h" if hours else f"{days}d"
    if hours:
        return f"{hours}h {minutes}m" if minutes else f"{hours}h"
    if minutes:
        return f"{minutes}m {secs}s" if secs else f"{minutes}m"
    return f"{secs}s"


def parse_duration(text: str) -> float:
    """Parse ``30s``, ``30m``, ``2h``, ``1d`` into seconds; ``ValueError`` says what works."""
    match = _DURATION.match(text.strip().lower())
    if not match or int(match.group(1)) == 0:
        raise ValueError(f"bad duration {text!r}: use a number and s, m, h or d, like 30m or 2h")
    return int(match.group(1)) * _UNIT_SECONDS[match.group(2)]
