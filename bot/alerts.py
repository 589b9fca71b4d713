"""Which supervisor events become chat alerts, how they read, and whether they make a sound.

Severity follows what the user must do, and a message's sound follows its
severity alone (``severity``; the table is in docs/SPEC.md): only what needs
a person now is loud. A crash or hang that is being restarted is a quiet
warning whose later steps (restarting, attempt 3/20) edit the same message;
one left down, or a give-up, is loud and carries an Acknowledge button; a
give-up is repeated until acknowledged or started; for a workflow with
``diagnose = "auto"`` its diagnosis follows as a quiet message of its own
(the give-up already made the sound). Starts, stops and pauses
the user asked for are not echoed back, but one that ends an open incident
closes its message.

Events carry where their incident stands (cause, failures, last detail), so
an incident's message can be continued by a bot that restarted in the middle
of it; the headline remembered here only adds what it was doing and its
last lines of output.
"""

from __future__ import annotations

from datetime import UTC, tzinfo
from typing import Literal

from bot.cost import budget_alert
from bot.heal import applied_message, proposal_key, proposed_message, rolled_back_message
from bot.outbox import Alert
from bot.render import actions, tail_button
from bot.text import (
    Button,
    clip_lines_from_top,
    esc,
    esc_clip,
    esc_clip_middle,
    format_duration,
)
from bot.why import verdict_message
from supervisor.events import (
    BudgetPaused,
    BudgetResumed,
    BudgetWarning,
    Crashed,
    Diagnosed,
    ErrorReported,
    Event,
    Finished,
    GaveUp,
    HealApplied,
    HealProposed,
    HealRolledBack,
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

ERROR_CLIP = 1500
LOG_TAIL_CLIP = 1200
SUMMARY_CLIP = 300
Severity = Literal["info", "warning", "critical"]

CLOSED_BY = {
    "stopped": "⏹ stopped by hand",
    "started": "▶️ started by hand",
    "restarted": "🔁 restarted by hand",
    "paused": "⏸ paused by hand",
    "resumed": "▶️ resumed by hand",
}


def severity(event: Event) -> Severity:
    """How much ``event`` needs a person: critical is loud, the rest is quiet."""
    match event:
        case Crashed() | Hung():
            return "warning" if event.will_restart else "critical"
        case GaveUp() | ErrorReported() | StatusChanged(new="error") | HealRolledBack():
            return "critical"
        case StateUnreadable() | BudgetWarning():
            return "warning"
        case BudgetPaused():
            return "critical"
        case _:
            return "info"


def why_button(name: str) -> Button:
    return Button("🔎 Why?", f"why:{name}")


def buttons(name: str, *, acknowledge: bool = False) -> tuple[Button, ...]:
    """The next steps: restart, tail, ask why, mute this workflow for an hour (acknowledge)."""
    ack = (Button("Ack", f"ack:{name}"),) if acknowledge else ()
    return (*actions(name), why_button(name), Button("Mute 1h", f"mute:{name}:1h"), *ack)


def incident_key(workflow: str, incident: str) -> str:
    return f"incident:{workflow}:{incident}"


def _plan(event: Crashed | Hung) -> str:
    """What happens next, in the words the give-up that may follow uses too."""
    if event.will_restart:
        next_in = event.next_restart_in
        when = f", next in {format_duration(next_in)}" if next_in is not None else ""
        return f"restarting, attempt {event.attempt + 1}/{event.max_attempts}{when}"
    if event.gives_up:
        return f"giving up: {_limit(event.attempt, event.max_attempts)}"
    return f'not restarting: its policy is restart = "{esc(event.restart)}"'


def _limit(restarts: int, max_attempts: int) -> str:
    if max_attempts == 0:
        return "max_restart_attempts = 0 allows no restart"
    made = "1 restart" if restarts == 1 else f"{restarts} restarts in a row"
    return f"{made} failed (max_restart_attempts = {max_attempts})"


def _headline(workflow: str, cause: IncidentCause, failures: int, detail: str) -> str:
    """The first line of an incident's message: what failed, how often, and how."""
    icon, what = ("⏳", "hung") if cause == "hang" else ("💥", "crashed")
    detail = esc_clip(detail, 500)
    name = f"<b>{esc(workflow)}</b>"
    if failures <= 1:
        return f"{icon} {name} {what}: {detail}"
    return f"{icon} {name} failed {failures} times in a row; last {what}: {detail}"


def _failure(event: Crashed | Hung) -> str:
    """What went wrong, in words for a phone: durations as 5m 12s rather than 312s."""
    if not isinstance(event, Hung):
        return event.detail
    limit = format_duration(event.threshold)
    if event.heartbeat_age is None:
        return f"no heartbeat within {limit}"
    return f"no heartbeat for {format_duration(event.heartbeat_age)} (threshold {limit})"


def _ordinal(number: int) -> str:
    suffix = (
        "th" if 10 <= number % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(number % 10, "th")
    )
    return f"{number}{suffix}"


class AlertComposer:
    """Turns events into alerts; remembers each open incident's headline for its edits.

    ``remind_after`` (seconds, from ``ALERT_RENOTIFY_HOURS``) repeats a give-up
    nobody acknowledged; None never does.
    """

    def __init__(self, remind_after: float | None = None, tz: tzinfo = UTC) -> None:
        self._headlines: dict[str, str] = {}
        self._remind_after = remind_after
        self._tz = tz  # ALERT_TIMEZONE: of the times an alert names

    def alerts(self, event: Event) -> list[Alert]:
        return [
            Alert(
                alert.text,
                alert.buttons,
                key=alert.key,
                loud=severity(event) == "critical",
                critical=alert.critical,
                mergeable=alert.mergeable,
                workflow=event.workflow,
                happened_at=event.time.timestamp(),
                remind_after=alert.remind_after,
                ends_reminders=alert.ends_reminders,
            )
            for alert in self._compose(event)
        ]

    def _compose(self, event: Event) -> list[Alert]:
        """The alerts' texts and buttons; ``alerts`` adds sound, workflow and time."""
        match event:
            case Crashed() | Hung():
                return [self._incident(event)]
            case Restarted(incident=str() as incident):
                return self._restarted(event, incident)
            case GaveUp():
                return [self._gave_up(event)]
            case HealProposed():
                proposal = proposed_message(event)
                key = proposal_key(event.proposal)
                return [Alert(proposal.text, proposal.buttons, key=key, mergeable=False)]
            case HealApplied():
                done = applied_message(event)
                closed = Alert(
                    f"🩹 <b>{esc(event.workflow)}</b>: fix applied ↓",
                    key=proposal_key(event.proposal),
                    mergeable=False,
                )
                return [closed, Alert(done.text, done.buttons, mergeable=False)]
            case HealRolledBack():
                undone = rolled_back_message(event)
                return [Alert(undone.text, critical=True, mergeable=False)]
            case Diagnosed():
                answer = verdict_message(event.verdict)
                text = f"↳ why <b>{esc(event.workflow)}</b> gave up\n{answer.text}"
                return [Alert(text, answer.buttons, mergeable=False)]
            case Recovered():
                key = incident_key(event.workflow, event.incident)
                headline = self._close(key) or _headline(
                    event.workflow, event.cause, event.failures, event.last_detail
                )
                down = format_duration(event.down_seconds)
                note = f"✅ <b>{esc(event.workflow)}</b> recovered after {down} down"
                return [
                    Alert(f"{headline}\n{note}", key=key, mergeable=False),
                    Alert(note),
                ]
            case IncidentClosed():
                key = incident_key(event.workflow, event.incident)
                headline = self._close(key) or _headline(
                    event.workflow, event.cause, event.failures, event.last_detail
                )
                text = f"{headline}\n{CLOSED_BY[event.how]}"
                return [Alert(text, key=key, mergeable=False, ends_reminders=True)]
            case StateUnreadable():
                text = (
                    f"⚠️ <b>{esc(event.workflow)}</b>: cannot read its state database "
                    f"({esc_clip(event.reason, 300)}); its health is unknown until it can."
                )
                return [Alert(text, (tail_button(event.workflow),))]
            case StateReadable():
                lasted = format_duration(event.unreadable_seconds)
                text = f"👍 <b>{esc(event.workflow)}</b>: state database readable again ({lasted})"
                return [Alert(text)]
            case ErrorReported():
                again = (
                    f" (again, {_ordinal(event.repeat)} time in 24h)" if event.repeat > 1 else ""
                )
                error = esc_clip_middle(event.text, ERROR_CLIP)
                text = f"❗ <b>{esc(event.workflow)}</b> error{again}\n<pre>{error}</pre>"
                return [Alert(text, buttons(event.workflow, acknowledge=True))]
            case Finished():
                text = f"🏁 <b>{esc(event.workflow)}</b> finished"
                if event.summary:
                    text += f": {esc_clip(event.summary, 500)}"
                if event.note:
                    text += f"\n<i>{esc_clip(event.note, 300)}</i>"
                return [Alert(text)]
            case StatusChanged(new="error"):
                text = f"❗ <b>{esc(event.workflow)}</b> says its status is error"
                if event.summary:
                    text += f"\n{esc_clip(event.summary, 500)}"
                return [Alert(text, buttons(event.workflow, acknowledge=True))]
            case BudgetWarning() | BudgetPaused() | BudgetResumed():
                return [budget_alert(event, self._tz)]
            case Reloaded():
                path = esc_clip(event.path, 300)
                return [Alert(f"🔄 <b>{esc(event.workflow)}</b> reloaded: {path} changed")]
            case _:
                return []

    def _incident(self, event: Crashed | Hung) -> Alert:
        """The incident's message: its latest failure, what it was doing, its last output,
        and what comes next."""
        key = incident_key(event.workflow, event.incident)
        cause: IncidentCause = "hang" if isinstance(event, Hung) else "crash"
        headline = _headline(event.workflow, cause, event.failures, _failure(event))
        if event.summary:
            headline += f"\n<i>it was: {esc_clip(event.summary, SUMMARY_CLIP)}</i>"
        if event.log_tail:
            lines = [esc(line) for line in event.log_tail]
            headline += f"\n<pre>{clip_lines_from_top(lines, LOG_TAIL_CLIP)}</pre>"
        self._headlines[key] = headline
        return Alert(
            f"{headline}\n{_plan(event)}",
            buttons(event.workflow, acknowledge=not event.will_restart),
            key=key,
            critical=isinstance(event, Hung) or not event.will_restart,
            mergeable=False,
        )

    def _gave_up(self, event: GaveUp) -> Alert:
        self._close(incident_key(event.workflow, event.incident))
        name = esc(event.workflow)
        text = (
            f"🛑 <b>{name}</b> gave up: {_limit(event.attempts, event.max_attempts)}\n"
            f"last: {esc_clip(event.last_detail, 300)}\n"
            f"It waits for /start {name}."
        )
        start = Button("Start", f"start:{event.workflow}")
        ack = Button("Ack", f"ack:{event.workflow}")
        return Alert(
            text,
            (start, tail_button(event.workflow), why_button(event.workflow), ack),
            critical=True,
            mergeable=False,
            remind_after=self._remind_after,
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
