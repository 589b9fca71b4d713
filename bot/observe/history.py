"""A workflow's process state over a window of time, derived from the control DB's events.

The supervisor does not store its states over time, but every change of state
comes with an event in its log (``supervisor.events``), and the log is kept
90 days. So a history is rebuilt from those events, by these rules, each event
deciding the band from its time until the next one:

| event | band from then on |
|---|---|
| ``started``, ``restarted``, ``resumed``, ``recovered``, ``reloaded`` | running |
| ``hung`` | hung (until the restart, the give-up or a person acts) |
| ``crashed`` | crashed (backing off, crashed for good) |
| ``gave_up`` | stays hung or crashed, as what took it down; crashed otherwise |
| ``paused`` | paused |
| ``stopped``, ``finished`` | stopped (by a person, a shutdown, or done) |
| anything else (errors, statuses, diagnoses, heal) | no change |

Where a workflow stood when the window opens is its newest such event before
it; with none the time up to its first event is unknown (not drawn, not
counted). ``restarted`` events are the restarts marked on the chart.

Uptime is the share of the time it was meant to run that it ran: running ÷
(running + hung + crashed). A pause or a stop is a person's choice, not an
outage, and counts for neither; a workflow off for the whole window has no
uptime (``None``).

What it does not know: "starting" (a new process before its first heartbeat)
is drawn as running, since no event marks the first heartbeat of a start that
follows no outage; and a kill -9 of the bot leaves no event, so the band keeps
its last state until the next start says otherwise.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import sqlalchemy as sa

from supervisor.eventlog import events_since, last_before
from supervisor.events import EventRecord

Band = Literal["running", "hung", "crashed", "paused", "stopped"]
BANDS: tuple[Band, ...] = ("running", "hung", "crashed", "paused", "stopped")
FAILING: frozenset[Band] = frozenset({"hung", "crashed"})

BAND_OF: Mapping[str, Band] = {
    "started": "running",
    "restarted": "running",
    "resumed": "running",
    "recovered": "running",
    "reloaded": "running",
    "hung": "hung",
    "crashed": "crashed",
    "paused": "paused",
    "budget_paused": "paused",
    "budget_resumed": "running",
    "stopped": "stopped",
    "finished": "stopped",
}
GAVE_UP = "gave_up"
STATE_KINDS: frozenset[str] = frozenset({*BAND_OF, GAVE_UP})
RESTART = "restarted"


def next_band(current: Band | None, kind: str) -> Band | None:
    """The band after an event of ``kind`` (the table in the module's docstring)."""
    if kind == GAVE_UP:
        return current if current in FAILING else "crashed"
    return BAND_OF.get(kind, current)


@dataclass(frozen=True, slots=True)
class Span:
    """One stretch of one band."""

    start: datetime
    end: datetime
    band: Band

    @property
    def seconds(self) -> float:
        return (self.end - self.start).total_seconds()


@dataclass(frozen=True, slots=True)
class History:
    """One workflow over ``start``..``end``: its bands (gaps are unknown) and its restarts."""

    workflow: str
    start: datetime
    end: datetime
    spans: tuple[Span, ...]
    restarts: tuple[datetime, ...] = ()

    def seconds(self, band: Band) -> float:
        return sum(span.seconds for span in self.spans if span.band == band)

    @property
    def window_seconds(self) -> float:
        return (self.end - self.start).total_seconds()

    @property
    def down_seconds(self) -> float:
        """Time hung or crashed: an outage."""
        return sum(self.seconds(band) for band in FAILING)

    @property
    def uptime(self) -> float | None:
        """Running ÷ the time it was meant to run (0..1); None when it never was."""
        meant = self.seconds("running") + self.down_seconds
        return self.seconds("running") / meant if meant > 0 else None

    def band_at(self, moment: datetime) -> Band | None:
        for span in self.spans:
            if span.start <= moment < span.end:
                return span.band
        return None


def history(
    workflow: str,
    events: Sequence[EventRecord],
    start: datetime,
    end: datetime,
    before: EventRecord | None = None,
) -> History:
    """The history of ``workflow`` over ``start``..``end`` from its events in the window
    (oldest first) and ``before``, its newest state event before the window opened."""
    band = next_band(None, before.kind) if before is not None else None
    spans: list[Span] = []
    restarts: list[datetime] = []
    since = start

    def close(until: datetime) -> None:
        if band is not None and until > since:
            if spans and spans[-1].band == band and spans[-1].end == since:
                spans[-1] = Span(spans[-1].start, until, band)
            else:
                spans.append(Span(since, until, band))

    for event in events:
        moment = min(max(event.time, since), end)  # clocks may step back; nothing past the end
        close(moment)
        since = moment
        band = next_band(band, event.kind)
        if event.kind == RESTART and start <= event.time <= end:
            restarts.append(event.time)
    close(end)
    return History(workflow, start, end, tuple(spans), tuple(restarts))


def worst_first(histories: Sequence[History]) -> list[History]:
    """Lowest uptime first (more time down first among equals); those never meant to run last."""
    return sorted(
        histories,
        key=lambda h: (h.uptime is None, h.uptime or 0.0, -h.down_seconds, h.workflow),
    )


def read_histories(
    engine: sa.Engine, workflows: Sequence[str], start: datetime, end: datetime
) -> list[History]:
    """The histories of ``workflows`` over the window, from the control DB (blocking)."""
    with engine.connect() as conn:
        before = last_before(conn, start, kinds=STATE_KINDS, workflows=workflows)
        events = events_since(conn, start, workflows=workflows, kinds=STATE_KINDS)
    grouped: dict[str, list[EventRecord]] = defaultdict(list)
    for event in events:
        grouped[event.workflow].append(event)
    return [history(name, grouped[name], start, end, before.get(name)) for name in workflows]
