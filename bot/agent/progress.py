"""The progress message of a bridge turn, as a pure function of what happened and when.

One quiet message per turn shows how long the agent has worked and its last
few steps, with a Stop button; it says so when nothing happened for
``STALL_SECONDS``, and when the turn is over it becomes a one-line summary
without buttons. Rendering is separate from sending (``bot.agent.chat``
paces the edits), so the wording is tested without a chat.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from bot.text import Button, Message, esc, esc_clip, format_duration
from supervisor.agent.types import Step

STEPS_SHOWN = 5
STALL_SECONDS = 60.0
STEP_CLIP = 60


@dataclass(slots=True)
class Progress:
    """What a turn did so far; times are the event loop's seconds."""

    workflow: str
    session_id: str
    started: float
    steps: list[Step] = field(default_factory=list)
    last_change: float = 0.0
    waiting_for: str | None = None  # the proposal waiting for a tap, if any

    def __post_init__(self) -> None:
        self.last_change = self.last_change or self.started

    def add(self, step: Step, now: float) -> None:
        self.steps.append(step)
        self.last_change = now

    def waiting(self, summary: str | None, now: float) -> None:
        self.waiting_for = summary
        self.last_change = now

    def render(self, now: float) -> Message:
        """The message while the turn runs."""
        elapsed = format_duration(max(0.0, now - self.started))
        lines = [f"🤖 <b>{esc(self.workflow)}</b> · working {elapsed}"]
        hidden = len(self.steps) - STEPS_SHOWN
        if hidden > 0:
            lines.append(f"<i>… {hidden} earlier steps</i>")
        lines += [esc_clip(str(step), STEP_CLIP) for step in self.steps[-STEPS_SHOWN:]]
        if self.waiting_for is not None:
            lines.append(f"⏳ waiting for your approval: {esc_clip(self.waiting_for, STEP_CLIP)}")
        elif now - self.last_change >= STALL_SECONDS:
            lines.append(f"<i>no progress for {format_duration(now - self.last_change)}</i>")
        return Message("\n".join(lines), (Button("⏹ Stop", f"agentstop:{self.session_id}"),))

    def final(self, now: float, ended: str | None) -> Message:
        """The message once the turn is over: how it ended, how long, how many steps."""
        took = format_duration(max(0.0, now - self.started))
        steps = f"{len(self.steps)} step{'s' if len(self.steps) != 1 else ''}"
        how = "✅ answered" if ended is None else f"⏹ {esc(ended)}"
        return Message(f"🤖 <b>{esc(self.workflow)}</b> · {how} after {took} · {steps}")
