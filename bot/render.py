"""Pure functions from supervisor snapshots to chat messages.

Every dynamic string goes through ``esc`` exactly once, here, and every
message is built to fit Telegram's 4096 characters: long lists are split into
several messages, long texts are clipped with a mark. Dynamic strings are cut
before escaping (``esc_clip``), so a cut never splits an entity or a tag.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from bot.text import (
    TELEGRAM_LIMIT,
    Button,
    Message,
    clip_html,
    clip_lines_from_top,
    esc,
    esc_clip,
    format_duration,
)
from supervisor.control import EventRecord
from supervisor.events import WorkflowStatus

ICONS = {
    "starting": "🟡",
    "running": "🟢",
    "hung": "⏳",
    "backoff": "🔁",
    "stopped": "⏹",
    "paused": "⏸",
    "finished": "✅",
    "crashed": "💥",
    "gave_up": "🛑",
}
SUMMARY_IN_LIST = 80
NAME_IN_LIST = 64  # the config's name limit; anything longer is clipped, not trusted
STATUS_IN_LIST = 40
EVENT_DETAIL = 120
AUDIT_ENTRY = 200
DB_PROBLEM = 300
MORE_RESERVE = 60  # room for the "… and N more" line
ERROR_IN_DETAIL = 1500
PRE_OVERHEAD = len("<pre></pre>")
ERROR_HEADING = "\n\n<b>last error</b>\n"


def icon(status: WorkflowStatus) -> str:
    if status.status == "error" and status.state in ("running", "starting"):
        return "❗"
    return ICONS.get(status.state, "•")


def _age(seconds: float | None) -> str:
    return "never" if seconds is None else f"{format_duration(seconds)} ago"


def status_line(status: WorkflowStatus) -> str:
    name = esc_clip(status.name, NAME_IN_LIST)
    parts = [
        f"{icon(status)} <b>{name}</b> {esc_clip(status.status or status.state, STATUS_IN_LIST)}"
    ]
    if status.state not in ("stopped", "finished", "paused"):
        parts.append(f"♥ {_age(status.heartbeat_age)}")
    if status.restarts:
        parts.append(f"↻{status.restarts}")
    line = " · ".join(parts)
    if status.summary:
        line += f" — {esc_clip(' '.join(status.summary.split()), SUMMARY_IN_LIST)}"
    return line


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


def overview(statuses: Sequence[WorkflowStatus], *, digest: bool = False) -> list[Message]:
    """One line per workflow, split over as many messages as it takes."""
    if not statuses:
        return [Message("No workflows configured.")]
    count = len(statuses)
    header = f"<b>{count} workflow{'' if count == 1 else 's'}</b>" + (" · digest" if digest else "")
    return pack([status_line(status) for status in statuses], header=header)


def detail(
    status: WorkflowStatus, events: Sequence[EventRecord], audit: Sequence[str], now: datetime
) -> Message:
    lines = [status_line(status)]
    lines.append(
        f"state: {esc_clip(status.state, STATUS_IN_LIST)}"
        + (f" · pid {status.pid}" if status.pid else "")
    )
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
        lines.append(f"⚠️ {esc_clip(status.db_problem, DB_PROBLEM)}")
    if events:
        lines.append("\n<b>recent events</b>")
        lines += [_event_line(event) for event in events]
    if audit:
        lines.append("\n<b>recent commands</b>")
        lines += [esc_clip(entry, AUDIT_ENTRY) for entry in audit]
    text = clip_html("\n".join(lines), TELEGRAM_LIMIT)
    if status.last_error:
        room = TELEGRAM_LIMIT - len(text) - len(ERROR_HEADING) - PRE_OVERHEAD
        if room > 100:
            error = esc_clip(status.last_error, min(room, ERROR_IN_DETAIL * 2))
            text += f"{ERROR_HEADING}<pre>{error}</pre>"
    return Message(text, actions(status.name))


def _event_line(event: EventRecord) -> str:
    kind = esc_clip(event.kind, STATUS_IN_LIST)
    return f"{_clock(event.time)} {kind}: {esc_clip(event.detail, EVENT_DETAIL)}"


def _clock(moment: datetime) -> str:
    return moment.strftime("%m-%d %H:%M:%S")


def tail_button(name: str) -> Button:
    return Button("Tail", f"tail:{name}")


def actions(name: str) -> tuple[Button, ...]:
    """The next steps for a workflow: restart it, or look at its log."""
    return (Button("Restart", f"restart:{name}"), tail_button(name))


def tail_message(name: str, lines: Sequence[str], *, following: str = "") -> Message:
    """The last lines in a <pre> block, cut from the top so the block fits one message."""
    header = f"<b>{esc_clip(name, NAME_IN_LIST)}</b> log{following}\n"
    room = TELEGRAM_LIMIT - len(header) - PRE_OVERHEAD
    escaped = [esc(line) for line in lines] or ["(empty)"]
    # Cut after escaping so the block fits exactly; a cut never splits an entity.
    body = clip_lines_from_top(escaped, room)
    return Message(f"{header}<pre>{body}</pre>", (tail_button(name),))


def names_message(statuses: Sequence[WorkflowStatus]) -> Message:
    """The configured names in one message; past the limit, a count of the rest."""
    text = "<b>Workflows</b>"
    lines = [_name_line(status) for status in statuses] or ["none configured"]
    for index, line in enumerate(lines):
        if len(text) + 1 + len(line) + MORE_RESERVE > TELEGRAM_LIMIT:
            return Message(f"{text}\n… and {len(lines) - index} more; /status lists them all")
        text += "\n" + line
    return Message(text)


def _name_line(status: WorkflowStatus) -> str:
    name = esc_clip(status.name, NAME_IN_LIST)
    return f"{icon(status)} <code>{name}</code> {esc_clip(status.state, STATUS_IN_LIST)}"


HELP = """<b>Commands</b>
/status [name] – every workflow, or one in detail
/workflows – the configured names
/start name · /stop name · /restart name
/pause name · /resume name – pause survives restarts
/tail name [lines|follow] – the last log lines (default 30, max 200)
/mute [duration] – hold alerts (30m, 2h; default 1h); hangs and give-ups still come
/unmute – end the mute and get a summary
/help – this list"""
