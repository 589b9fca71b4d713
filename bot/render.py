"""Pure functions from supervisor snapshots to chat messages.

Every dynamic string goes through ``esc`` exactly once, here, and every
message is built to fit Telegram's 4096 characters: long lists are split into
several messages, long texts are clipped with a mark. Dynamic strings are cut
before escaping (``esc_clip``), so a cut never splits an entity or a tag.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import datetime, tzinfo

from bot.cost import spend_fragment, spend_lines
from bot.localtime import local_time
from bot.outbox import Mute
from bot.text import (
    TELEGRAM_LIMIT,
    Button,
    Message,
    clip_html,
    clip_lines_from_top,
    esc,
    esc_clip,
    format_duration,
    pack,
)
from supervisor.events import LIVE_STATES, STATE_LABELS, EventRecord, WorkflowStatus, own_word

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


def _age(seconds: float | None) -> str:
    return "never" if seconds is None else f"{format_duration(seconds)} ago"


def status_line(status: WorkflowStatus) -> str:
    """``🟢 api running · says error · ♥ 12s ago · ↻2 — summary``.

    The state is the supervisor's; what the workflow says of itself
    (``supervisor.status``) and its heartbeat are shown only beside a live
    process, so a gone process never looks alive.
    """
    icon, word = STATE_LABELS[status.state]
    parts = [f"{icon} <b>{esc_clip(status.name, NAME_IN_LIST)}</b> {word}"]
    says = own_word(status.state, status.status)
    if says:
        parts.append(f"says {esc_clip(says, STATUS_IN_LIST)}")
    if status.state in LIVE_STATES:
        parts.append(f"♥ {_age(status.heartbeat_age)}")
    if status.restarts:
        parts.append(f"↻{status.restarts}")
    spent = spend_fragment(status.spend)
    if spent:
        parts.append(spent)
    line = " · ".join(parts)
    if status.summary:
        line += f" — {esc_clip(' '.join(status.summary.split()), SUMMARY_IN_LIST)}"
    return line


def overview(statuses: Sequence[WorkflowStatus], note: str = "") -> list[Message]:
    """One line per workflow, split over as many messages as it takes; ``note`` goes first."""
    count = len(statuses)
    header = f"<b>{count} workflow{'' if count == 1 else 's'}</b>"
    if not count:
        header = "No workflows configured."
    if note:
        header = f"{note}\n{header}"
    return pack([status_line(status) for status in statuses], header=header)


def mutes_line(mutes: Sequence[Mute], tz: tzinfo, now: datetime) -> str:
    """``🔕 muted: everything until 15:00 CET · api until 16:30 CET``, or "" with none.

    For ``/status``: a quiet chat must not pass for a healthy fleet when alerts are held.
    """
    if not mutes:
        return ""
    parts = [
        f"{'everything' if mute.workflow is None else esc_clip(mute.workflow, NAME_IN_LIST)}"
        f" until {local_time(mute.until.timestamp(), tz, now.timestamp())}"
        for mute in mutes
    ]
    return "🔕 muted: " + " · ".join(parts)


def detail(
    status: WorkflowStatus, events: Sequence[EventRecord], audit: Sequence[str], now: datetime
) -> Message:
    lines = [status_line(status)]
    if status.pid:
        lines.append(f"pid {status.pid}")
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
    lines += spend_lines(status.spend)
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


def chart_button(name: str) -> tuple[Button, ...]:
    """📈 on ``/status NAME`` where charts are drawn: the workflow's last 24 h as a picture
    (none for a name whose button data would pass Telegram's 64 bytes)."""
    data = f"chart:{name}"
    return (Button("📈", data),) if len(data.encode()) <= CALLBACK_DATA_LIMIT else ()


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
    lines = [name_line(status) for status in statuses] or ["none configured"]
    for index, line in enumerate(lines):
        if len(text) + 1 + len(line) + MORE_RESERVE > TELEGRAM_LIMIT:
            return Message(f"{text}\n… and {len(lines) - index} more; /status lists them all")
        text += "\n" + line
    return Message(text)


def name_line(status: WorkflowStatus) -> str:
    icon, word = STATE_LABELS[status.state]
    return f"{icon} <code>{esc_clip(status.name, NAME_IN_LIST)}</code> {word}"


HELP = """<b>Commands</b>
/status [name] – every workflow, or one in detail
/workflows – the configured names
/start name · /stop name · /restart name
/pause name · /resume name – pause survives restarts
/tail name [lines|follow] – the last log lines (default 30, at most 200)
/logs name – the last 1 MB of the log, as a file
/chart [name] [24h|7d] – a picture: its states, restarts and heartbeat over a day or a \
week; alone, every workflow's uptime, worst first
/why name – why it failed: its evidence, explained (rules, then Claude)
/ask [name] text – ask the agent, who works in the workflow's directory (or just write; \
reply to an alert or an answer to talk about it)
/new – a fresh agent session · /sessions – recent ones
/fix name [note] – Claude proposes a fix in a worktree, proven by checks and a smoke run; \
you apply it with one tap
/mute [name] [duration] – hold alerts, of one workflow or all (30m, 2h; default 1h); \
hangs and give-ups still come
/unmute [name] – end the mute and get a summary
/ack name – stop the reminders of a give-up
/cost – what each workflow's agents spent today and in 7 days, highest first
/help – this list
A command without its name offers the names as buttons."""


def overview_counts(statuses: Sequence[WorkflowStatus]) -> str:
    """``3 ok · 1 gave up · 1 crashed``: the whole fleet in one line, for a phone's first look."""
    counts = Counter(status.state for status in statuses)
    words = [
        f"{counts[state]} {'ok' if state == 'running' else word}"  # the one summary word
        for state, (_icon, word) in STATE_LABELS.items()
        if counts[state]
    ]
    return " · ".join(words) or "no workflows configured"


CALLBACK_DATA_LIMIT = 64  # bytes, Telegram's limit for a button's data
BUTTON_LIMIT = 100  # buttons in one message, Telegram's limit


def name_buttons(
    action: str, names: Sequence[str], *, room: int = BUTTON_LIMIT
) -> tuple[tuple[Button, ...], int]:
    """One ``action:NAME`` button per workflow, and how many names got none.

    A name whose data would pass Telegram's 64 bytes, or past ``room``
    buttons, gets no button: Telegram would refuse the whole message.
    """
    fitting = [name for name in names if len(f"{action}:{name}".encode()) <= CALLBACK_DATA_LIMIT]
    buttons = tuple(Button(name, f"{action}:{name}") for name in fitting[:room])
    return buttons, len(names) - len(buttons)


def name_picker(command: str, names: Sequence[str], usage: str) -> Message:
    """The answer to a command that needs a name and got none: the usage line and the names."""
    if not names:
        return Message(esc(f"{usage} (no workflows configured)"))
    buttons, left = name_buttons(command, names)
    text = esc(usage) + ("; or tap a name:" if buttons else "")
    if left:
        text += f"\n{left} without a button (too many or too long): type /{esc(command)} NAME"
    return Message(text, buttons)


def greeting(statuses: Sequence[WorkflowStatus]) -> Message:
    """What Telegram's START button gets: who the bot is, the fleet in a line, where to go next."""
    text = (
        "👋 I watch your workflows and alert you here when one needs you.\n"
        f"<b>{esc(overview_counts(statuses))}</b>"
    )
    return Message(text, (Button("Status", "status"), Button("Help", "help")))


def stop_button(name: str) -> Button:
    """Ends ``/tail NAME follow``."""
    return Button("Stop", f"unfollow:{name}")
