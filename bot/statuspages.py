"""``/status`` of many workflows: the overview first, then what needs a look, then pages.

A thousand lines are no answer on a phone. Past ``PAGE_SIZE`` workflows the
reply is one message: counts for the whole fleet and per node, the
workflows that need a look (hung, backing off, crashed, gave up, state DB
unreadable), worst first, and buttons that turn the same message into pages
of compact lines, each with its names as buttons, and back (the buttons
carry the reply's key, so each press edits that message). Pure functions, like ``bot.render``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import tzinfo

from bot.fleet import node_line
from bot.render import name_buttons, name_line, overview_counts, status_line
from bot.text import TELEGRAM_LIMIT, Button, Message, clip_html, esc
from supervisor.events import ProcessState, WorkflowStatus
from supervisor.fleet.registry import NodeInfo

PAGE_SIZE = 20  # compact lines per page; also the most /status lists in full
SHOWN_WRONG = 10
ACTION = "statuspage"
# Worst first: what is down and stays down, then what is trying.
_SEVERITY: dict[ProcessState, int] = {"gave_up": 0, "hung": 1, "crashed": 2, "backoff": 3}


def paged(statuses: Sequence[WorkflowStatus]) -> bool:
    """Whether ``/status`` answers with the overview and pages rather than every line."""
    return len(statuses) > PAGE_SIZE


def pages(statuses: Sequence[WorkflowStatus]) -> int:
    return max(1, -(-len(statuses) // PAGE_SIZE))


def needs_a_look(statuses: Sequence[WorkflowStatus]) -> list[WorkflowStatus]:
    # A state DB not there yet beside a process just started is no news; later it is.
    wrong = [
        s for s in statuses if s.state in _SEVERITY or (s.db_problem and s.state != "starting")
    ]
    return sorted(wrong, key=lambda s: _SEVERITY.get(s.state, len(_SEVERITY)))


def overview_page(
    statuses: Sequence[WorkflowStatus],
    nodes: Sequence[NodeInfo],
    *,
    note: str,
    tz: tzinfo,
    now: float,
    key: str,
) -> Message:
    """Page 0: the counts (per node in a fleet), what needs a look, the page buttons."""
    where = f" on {len(nodes)} nodes" if nodes else ""
    lines = [f"<b>{len(statuses)} workflows{where}</b>: {overview_counts(statuses)}"]
    if note:
        lines.insert(0, note)
    for info in nodes:
        own = [s for s in statuses if s.node == info.node]
        if own or info.alive:
            lines.append(node_line(info, own, tz, now))
    wrong = needs_a_look(statuses)
    if wrong:
        lines.append(f"\n<b>Needs a look</b> ({len(wrong)})")
        lines += [status_line(status) for status in wrong[:SHOWN_WRONG]]
        if len(wrong) > SHOWN_WRONG:
            lines.append(f"… and {len(wrong) - SHOWN_WRONG} more in the pages")
    else:
        lines.append("\nNothing needs a look.")
    return Message(clip_html("\n".join(lines), TELEGRAM_LIMIT), buttons=_buttons(0, statuses, key))


def list_page(statuses: Sequence[WorkflowStatus], number: int, key: str) -> Message:
    """Page ``number`` (from 1): compact lines, grouped under their node's name in a fleet."""
    number = min(max(number, 1), pages(statuses))
    start = (number - 1) * PAGE_SIZE
    shown = statuses[start : start + PAGE_SIZE]
    lines = [f"<b>Workflows {start + 1}–{start + len(shown)} of {len(statuses)}</b>"]
    node: str | None = None
    for status in shown:
        if status.node is not None and status.node != node:
            node = status.node
            lines.append(f"🖥 <i>{esc(node)}</i>")
        lines.append(name_line(status))
    names, _ = name_buttons("status", [status.name for status in shown])  # tap one: its detail
    return Message(
        clip_html("\n".join(lines), TELEGRAM_LIMIT),
        buttons=(*names, *_buttons(number, statuses, key)),
    )


def _buttons(number: int, statuses: Sequence[WorkflowStatus], key: str) -> tuple[Button, ...]:
    last = pages(statuses)
    buttons: list[Button] = []
    if number > 0:
        buttons.append(Button("◀" if number > 1 else "◀ overview", f"{ACTION}:{key}:{number - 1}"))
    if number < last:
        label = f"pages 1–{last} ▶" if number == 0 else f"{number + 1}/{last} ▶"
        buttons.append(Button(label, f"{ACTION}:{key}:{number + 1}"))
    return tuple(buttons)
