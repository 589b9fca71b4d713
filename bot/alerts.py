"""Which supervisor events become chat alerts, and how they read.

Severity follows what the user must do. A crash or hang that is being
restarted is a warning whose later steps (restarting, attempt 3/20) edit the
same message; a give-up is a new, loud message; recovery is a short quiet
note. Starts, stops and pauses the user asked for are not echoed back, but
one that ends an open incident closes its message.

Events carry where their incident stands (cause, failures, last detail), so
an incident's message can be continued by a bot that restarted in the middle
of it; the headline remembered here only adds the crash's log lines.
"""

from __future__ import annotations

from bot.outbox import Alert
from bot.render import actions, overview, tail_button
from bot.text import Button, clip_lines_from_top, esc, esc_clip, format_duration
from supervisor.events import (
    Crashed,
    Digest,
    ErrorReported,
    Event,
    Finished,
    GaveUp,
    Hung,
    IncidentCause,
    IncidentClosed,
    Recovered,
    Reloaded,
    Restarted,
    StateReadable,
    StateUnreadable,
    StatusChanged,
)

ERROR_CLIP = 1000
LOG_TAIL_CLIP = 1200


def buttons(name: str) -> tuple[Button, ...]:
    return (*actions(name), Button("Mute 1h", "mute:1h"))


def incident_key(workflow: str, incident: str) -> str:
    return f"incident:{workflow}:{incident}"


def _plan(will_restart: bool, attempt: int, max_attempts: int, next_in: float | None) -> str:
    if not will_restart:
        return "not restarting (restart policy)"
    when = f", next in {format_duration(next_in)}" if next_in is not None else ""
    return f"restarting, attempt {attempt + 1}/{max_attempts}{when}"


def _headline(workflow: str, cause: IncidentCause, failures: int, detail: str) -> str:
    """The first line of an incident's message: what failed, how often, and how."""
    icon, what = ("⏳", "hung") if cause == "hang" else ("💥", "crashed")
    detail = esc_clip(detail, 500)
    name = f"<b>{esc(workflow)}</b>"
    if failures <= 1:
        return f"{icon} {name} {what}: {detail}"
    return f"{icon} {name} failed {failures} times in a row; last {what}: {detail}"


CLOSED_BY = {
    "stopped": "⏹ stopped by hand",
    "started": "▶️ started by hand",
    "restarted": "🔁 restarted by hand",
    "paused": "⏸ paused by hand",
    "resumed": "▶️ resumed by hand",
}


def _failure(event: Crashed | Hung) -> str:
    """What went wrong, in words for a phone: durations as 5m 12s rather than 312s."""
    if not isinstance(event, Hung):
        return event.detail
    limit = format_duration(event.threshold)
    if event.heartbeat_age is None:
        return f"no heartbeat within {limit}"
    return f"no heartbeat for {format_duration(event.heartbeat_age)} (threshold {limit})"


class AlertComposer:
    """Turns events into alerts; remembers each open incident's headline for its edits."""

    def __init__(self) -> None:
        self._headlines: dict[str, str] = {}

    def alerts(self, event: Event) -> list[Alert]:
        match event:
            case Crashed() | Hung():
                return [self._incident(event)]
            case Restarted(incident=str() as incident):
                return self._restarted(event, incident)
            case GaveUp():
                self._close(incident_key(event.workflow, event.incident))
                text = (
                    f"🛑 <b>{esc(event.workflow)}</b> gave up after {event.attempts} restarts\n"
                    f"last: {esc_clip(event.last_detail, 300)}\n"
                    f"It waits for /start {esc(event.workflow)}."
                )
                start = Button("Start", f"start:{event.workflow}")
                return [
                    Alert(
                        text,
                        (start, tail_button(event.workflow)),
                        critical=True,
                        mergeable=False,
                    )
                ]
            case Recovered():
                key = incident_key(event.workflow, event.incident)
                headline = self._close(key) or _headline(
                    event.workflow, event.cause, event.failures, event.last_detail
                )
                down = format_duration(event.down_seconds)
                note = f"✅ <b>{esc(event.workflow)}</b> recovered after {down} down"
                return [
                    Alert(f"{headline}\n{note}", key=key, loud=False, mergeable=False),
                    Alert(note, loud=False),
                ]
            case IncidentClosed():
                key = incident_key(event.workflow, event.incident)
                headline = self._close(key) or _headline(
                    event.workflow, event.cause, event.failures, event.last_detail
                )
                text = f"{headline}\n{CLOSED_BY[event.how]}"
                return [Alert(text, key=key, loud=False, mergeable=False)]
            case StateUnreadable():
                text = (
                    f"⚠️ <b>{esc(event.workflow)}</b>: cannot read its state database "
                    f"({esc_clip(event.reason, 300)}); its health is unknown until it can."
                )
                return [Alert(text, (tail_button(event.workflow),), loud=False)]
            case StateReadable():
                lasted = format_duration(event.unreadable_seconds)
                text = f"👍 <b>{esc(event.workflow)}</b>: state database readable again ({lasted})"
                return [Alert(text, loud=False)]
            case ErrorReported():
                error = esc_clip(event.text, ERROR_CLIP)
                text = f"❗ <b>{esc(event.workflow)}</b> error\n<pre>{error}</pre>"
                return [Alert(text, buttons(event.workflow))]
            case Finished():
                text = f"🏁 <b>{esc(event.workflow)}</b> finished"
                if event.summary:
                    text += f": {esc_clip(event.summary, 500)}"
                if event.note:
                    text += f"\n<i>{esc_clip(event.note, 300)}</i>"
                return [Alert(text, loud=False)]
            case StatusChanged(new="error"):
                text = f"❗ <b>{esc(event.workflow)}</b> status → error"
                if event.summary:
                    text += f"\n{esc_clip(event.summary, 500)}"
                return [Alert(text, buttons(event.workflow))]
            case Reloaded():
                path = esc_clip(event.path, 300)
                text = f"🔄 <b>{esc(event.workflow)}</b> reloaded: {path} changed"
                return [Alert(text, loud=False)]
            case Digest():
                return [
                    Alert(message.text, loud=False, mergeable=False)
                    for message in overview(event.workflows, digest=True)
                ]
            case _:
                return []

    def _incident(self, event: Crashed | Hung) -> Alert:
        """The incident's message: its latest failure, how many so far, and what comes next."""
        key = incident_key(event.workflow, event.incident)
        hung = isinstance(event, Hung)
        cause: IncidentCause = "hang" if hung else "crash"
        headline = _headline(event.workflow, cause, event.failures, _failure(event))
        if isinstance(event, Crashed) and event.log_tail:
            lines = [esc(line) for line in event.log_tail]
            headline += f"\n<pre>{clip_lines_from_top(lines, LOG_TAIL_CLIP)}</pre>"
        self._headlines[key] = headline
        plan = _plan(event.will_restart, event.attempt, event.max_attempts, event.next_restart_in)
        return Alert(
            f"{headline}\n{plan}",
            buttons(event.workflow),
            key=key,
            # Being restarted is a warning (no sound); left down, it needs the user (loud).
            loud=not event.will_restart,
            critical=hung or not event.will_restart,
            mergeable=False,
        )

    def _close(self, key: str) -> str | None:
        """Forget an incident that ended; its last headline, if this bot saw one."""
        return self._headlines.pop(key, None)

    def _restarted(self, event: Restarted, incident: str) -> list[Alert]:
        key = incident_key(event.workflow, incident)
        headline = self._headlines.get(key)
        if headline is None and event.cause is not None:
            headline = _headline(event.workflow, event.cause, event.failures, event.last_detail)
        if headline is None:
            return []
        attempt = f"{event.attempt}/{event.max_attempts}"
        text = f"{headline}\nrestarted, attempt {attempt}; waiting for a heartbeat"
        return [Alert(text, buttons(event.workflow), key=key, mergeable=False)]
