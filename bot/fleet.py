"""What the chat is told about the fleet itself: a node down or back, a new poller, /status by node.

A node down is loud and critical (its workflows run unsupervised: nobody
restarts them or says they crashed), its return quiet. A change of poller is
quiet: the chat works as before, but the person should know which host
answers. Pure functions, like ``bot.render``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import datetime, tzinfo

from bot.localtime import local_time
from bot.outbox import Alert
from bot.render import overview_counts, status_line
from bot.text import Message, esc, format_duration, pack
from supervisor.events import WorkflowStatus
from supervisor.fleet.registry import NodeChange, NodeInfo


def _at(moment: datetime, tz: tzinfo, now: float | None = None) -> str:
    return local_time(moment.timestamp(), tz, time.time() if now is None else now)


def node_alert(change: NodeChange, tz: tzinfo, now: float | None = None) -> Alert:
    """``🔴 node-b is down: 12 workflows unsupervised since 03:12 CET``, or its return.

    ``now`` (epoch seconds, the clock's by default) is what "back after 4m" counts to."""
    now = time.time() if now is None else now
    node = f"<b>{esc(change.node)}</b>"
    count = f"{change.workflows} workflow{'' if change.workflows == 1 else 's'}"
    if change.down:
        text = f"🔴 node {node} is down: {count} unsupervised since {_at(change.since, tz, now)}"
        return Alert(text, loud=True, critical=True, mergeable=False)
    lasted = format_duration(max(0.0, now - change.since.timestamp()))
    if not change.said:  # it came back before the poller looked: the outage is still news
        text = (
            f"🔴 node {node} was down for {lasted}: {count} unsupervised since "
            f"{_at(change.since, tz, now)}; it is back now"
        )
        return Alert(text, loud=True, critical=True, mergeable=False)
    verb = "is" if change.workflows == 1 else "are"
    text = f"🟢 node {node} is back after {lasted}; its {count} {verb} supervised again"
    return Alert(text, loud=False, critical=True, mergeable=False)


def takeover_alert(node: str, previous: str) -> Alert:
    return Alert(
        f"📡 node <b>{esc(node)}</b> now serves this chat (node {esc(previous)} stopped "
        "answering for the fleet)",
        loud=False,
        critical=True,
        mergeable=False,
    )


def fleet_overview(
    statuses: Sequence[WorkflowStatus],
    nodes: Sequence[NodeInfo],
    note: str,
    tz: tzinfo,
    now: float,
) -> list[Message]:
    """``/status`` of a fleet: per node its liveness and counts, then its workflows' lines.

    A down node's lines are what it last published, and say so.
    """
    count = len(statuses)
    header = f"<b>{count} workflow{'' if count == 1 else 's'} on {len(nodes)} nodes</b>"
    if note:
        header = f"{note}\n{header}"
    blocks: list[str] = []
    for info in nodes:
        own = [status for status in statuses if status.node == info.node]
        if not own and not info.alive:
            continue  # an old node with nothing configured: history, not news
        blocks.append(f"\n{node_line(info, own, tz, now)}")
        blocks += [status_line(status) for status in own]
    return pack(blocks, header=header)


def node_line(info: NodeInfo, own: Sequence[WorkflowStatus], tz: tzinfo, now: float) -> str:
    name = f"<b>{esc(info.node)}</b>"
    counts = overview_counts(own) if own else "no workflows"
    if info.alive:
        return f"🖥 {name} · {counts}"
    if info.stopped:
        return f"⚪ {name} stopped at {_at(info.seen_at, tz, now)} · as it left: {counts}"
    return f"🔴 {name} down since {_at(info.seen_at, tz, now)} · last known: {counts}"
