"""``/chart``, the 📈 button and the digest's chart: histories read and pictures drawn off the loop.

``Charts`` reads the control DB's event log (``bot.observe.history``) and the
heartbeat samples (``bot.observe.heartbeats``) in a thread, renders
(``bot.observe.charts``) in a thread, and hands back a photo
(``bot.transport.Document``) with its caption: the transport uploads it
directly, like ``/logs``'s file; a photo is never kept in the outbox.

``attach`` wires it into a running bot's pieces (the command router, the
digest, the heartbeat sampler); Telegram mode and the console both call it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta, tzinfo
from typing import TYPE_CHECKING

import sqlalchemy as sa

from bot.digest import DigestChart
from bot.localtime import local_time
from bot.observe.charts import fleet_chart, uptime_text, workflow_chart
from bot.observe.heartbeats import SAMPLE_SECONDS, HeartbeatSampler, HeartbeatStore
from bot.observe.history import History, read_histories, worst_first
from bot.text import esc
from bot.transport import Document

if TYPE_CHECKING:
    from bot.service import Service

WINDOWS: Mapping[str, timedelta] = {"24h": timedelta(hours=24), "7d": timedelta(days=7)}
WINDOW_WORDS: Mapping[str, str] = {"24h": "last 24 h", "7d": "last 7 days"}
DEFAULT_WINDOW = "24h"
WORST_IN_CAPTION = 3
UNSENT = "try /chart again later"


class Charts:
    """Pictures of the workflows' history, for the chat; every DB read and render in a thread."""

    def __init__(
        self,
        engine: sa.Engine,
        names: Callable[[], Sequence[str]],
        *,
        tz: tzinfo = UTC,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        sample_seconds: float = SAMPLE_SECONDS,
    ) -> None:
        """``names``: the workflows the fleet chart shows (every configured one)."""
        self._engine = engine
        self._names = names
        self.heartbeats = HeartbeatStore(engine)
        self.tz = tz
        self._clock = clock
        self._sample_seconds = sample_seconds

    async def workflow(self, name: str, window: str = DEFAULT_WINDOW) -> Document:
        """``/chart NAME [24h|7d]``: the workflow's states, restarts and heartbeat age."""
        end = self._clock()
        start = end - WINDOWS[window]
        data, history = await asyncio.to_thread(self._draw_workflow, name, start, end, window)
        restarts = len(history.restarts)
        caption = (
            f"📈 <b>{esc(name)}</b>, {WINDOW_WORDS[window]}: uptime "
            f"{uptime_text(history.uptime)}, {restarts} restart{'' if restarts == 1 else 's'}"
        )
        return _photo(f"{name}-{window}.png", data, caption)

    async def fleet(self, window: str = DEFAULT_WINDOW) -> Document:
        """``/chart [24h|7d]``: every workflow's uptime as bars, worst first."""
        end = self._clock()
        start = end - WINDOWS[window]
        data, histories = await asyncio.to_thread(
            self._draw_fleet, start, end, WINDOW_WORDS[window]
        )
        caption = f"📈 Uptime, {WINDOW_WORDS[window]}{_worst(histories)}"
        return _photo(f"fleet-{window}.png", data, caption)

    async def digest(self, since: float, until: float) -> Document | None:
        """The digest's picture: the fleet chart since the last digest, when any workflow
        was down (hung or crashed) meanwhile; None when none was."""
        start, end = (datetime.fromtimestamp(moment, UTC) for moment in (since, until))
        when = local_time(since, self.tz, until)
        drawn = await asyncio.to_thread(self._draw_if_down, start, end, f"since {when}")
        if drawn is None:
            return None
        data, histories = drawn
        caption = f"📋 Uptime since {esc(when)}{_worst(histories)}"
        return _photo("digest.png", data, caption)

    # -- in a thread ----------------------------------------------------------------------

    def _draw_workflow(
        self, name: str, start: datetime, end: datetime, window: str
    ) -> tuple[bytes, History]:
        [history] = read_histories(self._engine, [name], start, end)
        beats = self.heartbeats.read(name, start.timestamp(), end.timestamp())
        picture = workflow_chart(
            history,
            beats,
            tz=self.tz,
            window=WINDOW_WORDS[window],
            sample_seconds=self._sample_seconds,
        )
        return picture.png, history

    def _draw_fleet(
        self, start: datetime, end: datetime, window: str
    ) -> tuple[bytes, list[History]]:
        histories = worst_first(read_histories(self._engine, list(self._names()), start, end))
        return fleet_chart(histories, tz=self.tz, window=window).png, histories

    def _draw_if_down(
        self, start: datetime, end: datetime, window: str
    ) -> tuple[bytes, list[History]] | None:
        histories = worst_first(read_histories(self._engine, list(self._names()), start, end))
        if not any(history.down_seconds > 0 for history in histories):
            return None
        return fleet_chart(histories, tz=self.tz, window=window).png, histories


def _photo(filename: str, data: bytes, caption: str) -> Document:
    return Document(filename, data, caption, kind="photo", unsent=UNSENT)


def _worst(histories: Sequence[History]) -> str:
    """``; worst: api 80.0%, etl 97.5%``: the caption says what the bars show first."""
    down = [history for history in histories if history.down_seconds > 0]
    if not histories:
        return ": no workflows configured"
    if not down:
        return f": no outage in {len(histories)} workflow{'' if len(histories) == 1 else 's'}"
    worst = ", ".join(
        f"{esc(history.workflow)} {uptime_text(history.uptime)}"
        for history in down[:WORST_IN_CAPTION]
    )
    return f"; {len(down)} down at times, worst: {worst}"


def attach(service: Service, send_file: Callable[[Document], Awaitable[None]]) -> HeartbeatSampler:
    """Give a bot's router ``/chart``, its digest the chart of a day with an outage (sent
    with ``send_file``, to the alert chat), and return the heartbeat sampler to start with
    the bot and stop before it."""
    charts = Charts(service.engine, lambda: service.api.names, tz=service.timezone)
    service.router.charts = charts
    service.digest.chart = DigestChart(draw=charts.digest, send=send_file)
    return HeartbeatSampler(charts.heartbeats, service.supervisor.status)
