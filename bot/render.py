"""Pure functions from supervisor snapshots to chat messages.

Every dynamic string goes through ``esc`` exactly once, here, and every
message is built to fit Telegram's 4096 characters: long lists are split into
several messages, long texts are clipped with a mark.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from bot.text import (
    TELEGRAM_LIMIT,
    Button,
    Message,
    clip,
    clip_lines_from_top,
    esc,
    format_duration,
)
from supervisor.control import EventRecord
from supervisor.events import WorkflowStatus

ICONS = {
    "starting": "🟡",
    "running": "🟢",
    "backoff": "🔁",
    "stopped": "⏹",
    "paused": "⏸",
    "finished": "✅",
    "crashed": "💥",
    "gave_up": "🛑",
}
SUMMARY_IN_LIST = 80
ERROR_IN_DETAIL = 1500
PRE_OVERHEAD = len("<pre></pre>")


def icon(status: WorkflowStatus) -> str:
    if status.status == "error" and status.state in ("running", "starting"):
        return "❗"
    return ICONS.get(status.state, "•")


def _age(seconds: float | None) -> str:
    return "never" if seconds is None else f"{format_duration(seconds)} ago"


def status_line(status: WorkflowStatus) -> str:
    parts = [f"{icon(status)} <b>{esc(status.name)}</b> {esc(status.status or status.state)}"]
    if status.state not in ("stopped", "finished", "paused"):
        parts.append(f"♥ {_age(status.heartbeat_age)}")
    if status.restarts:
        parts.append(f"↻{status.restarts}")
    line = " · ".join(parts)
    if status.summary:
        line += f"\n    {esc(clip(status.summary, SUMMARY_IN_LIST))}"
    return line


def pack(blocks: Sequence[str], header: str = "") -> list[Message]:
    """Join blocks into as few messages as fit the limit; a block never straddles two."""
    messages: list[Message] = []
    current = header
    for block in blocks:
        candidate = f"{current}\n{block}" if current else block
        if len(candidate) > TELEGRAM_LIMIT and current:
            messages.append(Message(current))
            current = block[:TELEGRAM_LIMIT]
        else:
            current = candidate[:TELEGRAM_LIMIT]
    if current:
        messages.append(Message(current))
    return messages


def overview(statuses: Sequence[WorkflowStatus]) -> list[Message]:
    if not statuses:
        return [Message("No workflows configured.")]
    return pack(
        [status_line(status) for status in statuses], header=f"<b>{len(statuses)} workflows</b>"
    )


def detail(
    status: WorkflowStatus, events: Sequence[EventRecord], audit: Sequence[str], now: datetime
) -> Message:
    lines = [status_line(status)]
    lines.append(f"state: {esc(status.state)}" + (f" · pid {status.pid}" if status.pid else ""))
    if status.started_at and status.pid:
        lines.append(f"uptime: {format_duration((now - status.started_at).total_seconds())}")
    lines.append(f"restarts: {status.restarts}/{status.max_restarts}")
    if status.next_restart_at:
        lines.append(
            f"next restart in {format_duration((status.next_restart_at - now).total_seconds())}"
        )
    if status.exit_code is not None:
        lines.append(f"last exit code: {status.exit_code}")
    if status.db_problem:
        lines.append(f"⚠️ {esc(status.db_problem)}")
    if events:
        lines.append("\n<b>recent events</b>")
        lines += [f"{_clock(e.time)} {esc(e.kind)}: {esc(clip(e.detail, 120))}" for e in events]
    if audit:
        lines.append("\n<b>recent commands</b>")
        lines += [esc(entry) for entry in audit]
    text = "\n".join(lines)
    if status.last_error:
        room = TELEGRAM_LIMIT - len(text) - len("\n\n<b>last error</b>\n") - PRE_OVERHEAD - 1
        if room > 100:
            error = clip(status.last_error, min(room, ERROR_IN_DETAIL * 2))
            text += f"\n\n<b>last error</b>\n<pre>{esc(error)}</pre>"
    return Message(
        clip(text, TELEGRAM_LIMIT) if len(text) > TELEGRAM_LIMIT else text, actions(status.name)
    )


def _clock(moment: datetime) -> str:
    return moment.strftime("%m-%d %H:%M:%S")


def actions(name: str) -> tuple[Button, ...]:
    return (Button("Restart", f"restart:{name}"), Button("Tail", f"tail:{name}"))


def tail_message(name: str, lines: Sequence[str], *, following: str = "") -> Message:
    """The last lines in a <pre> block, cut from the top so the block fits one message."""
    header = f"<b>{esc(name)}</b> log{following}\n"
    room = TELEGRAM_LIMIT - len(header) - PRE_OVERHEAD
    escaped = [esc(line) for line in lines] or ["(empty)"]
    # Cut after escaping so the block fits exactly; a cut only ever drops a line's start.
    body = clip_lines_from_top(escaped, room)
    return Message(f"{header}<pre>{body}</pre>", (Button("Tail", f"tail:{name}"),))


def names_message(statuses: Sequence[WorkflowStatus]) -> Message:
    lines = [f"{icon(s)} <code>{esc(s.name)}</code> {esc(s.state)}" for s in statuses]
    return Message("<b>Workflows</b>\n" + ("\n".join(lines) or "none configured"))


HELP = """<b>Commands</b>
/status [name] – every workflow, or one in detail
/workflows – the configured names
/start name · /stop name · /restart name
/pause name · /resume name – pause survives restarts
/tail name [lines|follow] – the last log lines (default 30, max 200)
/mute [duration] – hold alerts (30m, 2h; default 1h); hangs and give-ups still come
/unmute – end the mute and get a summary
/help – this list"""
