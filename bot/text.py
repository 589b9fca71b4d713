"""Text primitives every chat message is built from.

Telegram takes at most 4096 characters of HTML; dynamic strings are escaped
exactly once, here, and long texts are clipped so that the markup around them
stays intact: a cut never lands inside a tag or an entity like ``&amp;``, and
every tag left open by a cut is closed again.
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

TELEGRAM_LIMIT = 4096
ELLIPSIS = "…"
MAX_DURATION_SECONDS = 366 * 86400  # longer mutes are typos, and far ones overflow datetime
_DURATION = re.compile(r"^([0-9]{1,9})([smhd])$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_ENTITY = re.compile(r"&(?:[A-Za-z][A-Za-z0-9]*|#[0-9]+|#[xX][0-9A-Fa-f]+);")
# An HTML token: a tag, an entity, or one plain character.
_TOKEN = re.compile(r"<(/?)([A-Za-z][\w-]*)[^>]*>|&(?:[A-Za-z][A-Za-z0-9]*|#\w+);|.", re.DOTALL)


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
    if limit <= 0:
        return ""
    return text[: limit - 1] + ELLIPSIS


def esc_clip(text: str, limit: int) -> str:
    """Escape ``text`` and cut it (before escaping) so the escaped form has <= ``limit`` chars."""
    escaped = esc(text)
    if len(escaped) <= limit:
        return escaped
    if limit <= 0:
        return ""
    size = cut = 0
    for cut, char in enumerate(text):  # noqa: B007 - the loop finds the cut
        size += len(esc(char))
        if size > limit - len(ELLIPSIS):
            break
    return esc(text[:cut]) + ELLIPSIS


def esc_clip_middle(text: str, limit: int) -> str:
    """Escape ``text`` to at most ``limit`` characters, cutting its middle if it must.

    A traceback's head says where it started and its last line what was
    raised, so both ends are kept; the cut says how much is missing.
    """
    escaped = esc(text)
    if len(escaped) <= limit:
        return escaped
    marker = f"\n{ELLIPSIS} {len(text):,} characters cut {ELLIPSIS}\n"  # the widest it can be
    budget = max(limit - len(marker), 0)
    head = _fitting(text, budget * 2 // 5)
    tail_size = _fitting(text[::-1], budget - len(esc(text[:head])))
    cut = len(text) - head - tail_size
    middle = f"\n{ELLIPSIS} {cut:,} characters cut {ELLIPSIS}\n"
    return esc(text[:head]) + middle + esc(text[len(text) - tail_size :])


def _fitting(text: str, budget: int) -> int:
    """How many leading characters of ``text`` escape to at most ``budget`` characters."""
    size = 0
    for count, char in enumerate(text):
        size += len(esc(char))
        if size > budget:
            return count
    return len(text)


def _entity_safe_start(line: str, start: int) -> int:
    """Move a cut at ``start`` forward past an entity it would split."""
    for match in _ENTITY.finditer(line, max(start - 12, 0)):
        if match.start() >= start:
            break
        if match.end() > start:
            return match.end()
    return start


def clip_lines_from_top(lines: list[str], limit: int) -> str:
    """Join lines, dropping the oldest (and cutting an overlong last one) to fit ``limit``.

    Lines may be escaped HTML: a cut line never starts inside an entity.
    """
    kept: list[str] = []
    size = 0
    for line in reversed(lines):
        if size + len(line) + 1 > limit:
            if not kept and limit > len(ELLIPSIS):
                start = _entity_safe_start(line, len(line) - (limit - len(ELLIPSIS)))
                kept.append(ELLIPSIS + line[start:])
            break
        kept.append(line)
        size += len(line) + 1
    return "\n".join(reversed(kept))


def clip_html(text: str, limit: int) -> str:
    """Cut Telegram HTML to at most ``limit`` chars between tokens, closing open tags."""
    if len(text) <= limit:
        return text
    kept: list[str] = []
    size = 0
    open_tags: list[str] = []
    for match in _TOKEN.finditer(text):
        token, closing, tag = match.group(0), match.group(1), match.group(2)
        closers = sum(len(f"</{name}>") for name in open_tags)
        extra = len(f"</{tag}>") if tag and not closing else 0
        if size + len(token) + extra + closers + len(ELLIPSIS) > limit:
            break
        if tag and closing and open_tags and open_tags[-1] == tag.lower():
            open_tags.pop()
        elif tag and not closing:
            open_tags.append(tag.lower())
        kept.append(token)
        size += len(token)
    return "".join(kept) + ELLIPSIS + "".join(f"</{name}>" for name in reversed(open_tags))


def pack(blocks: Sequence[str], header: str = "") -> list[Message]:
    """Join blocks into as few messages as fit the limit; a block never straddles two.

    A block too long for one message on its own is clipped between tags and entities.
    """
    messages: list[Message] = []
    current = clip_html(header, TELEGRAM_LIMIT)
    for raw in blocks:
        block = clip_html(raw, TELEGRAM_LIMIT)
        candidate = f"{current}\n{block}" if current else block
        if len(candidate) > TELEGRAM_LIMIT:
            messages.append(Message(current))
            current = block
        else:
            current = candidate
    if current:
        messages.append(Message(current))
    return messages


def format_duration(seconds: float) -> str:
    """Human durations for chat: ``45s``, ``4m 12s``, ``2h 5m``, ``3d 4h``."""
    if not math.isfinite(seconds):
        return "?"
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
    seconds = int(match.group(1)) * _UNIT_SECONDS[match.group(2)] if match else 0
    if not 0 < seconds <= MAX_DURATION_SECONDS:
        raise ValueError(
            f"bad duration {clip(text, 20)!r}: use a number and s, m, h or d, "
            "like 30m or 2h (at most 366d)"
        )
    return seconds
