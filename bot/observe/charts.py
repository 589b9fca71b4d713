"""Pictures for the chat: a workflow's states over time, and the fleet's uptime as bars.

Pure functions from histories (``bot.observe.history``) and heartbeat samples
(``bot.observe.heartbeats``) to PNG bytes, made for a phone: large type, few
ticks, no legend box (a line of coloured words names the bands that appear,
with their time). Rendering blocks for a fraction of a second, so callers run
it in a thread (``asyncio.to_thread``); it uses ``matplotlib.figure.Figure``
with its own Agg canvas, never ``pyplot`` and its global state, and one render
runs at a time (``_RENDERING``): matplotlib's font caches are shared, and two
charts at once would only share the same two cores.

matplotlib is imported on the first render, not with the bot: it costs half a
second that a bot which never draws need not pay.
"""

from __future__ import annotations

import io
import math
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import TYPE_CHECKING

from bot.observe.history import BANDS, Band, History
from bot.text import format_duration

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure
    from matplotlib.ticker import Locator

COLOURS: Mapping[Band, str] = {
    "running": "#2ca02c",
    "hung": "#ff9f1c",
    "crashed": "#d62728",
    "paused": "#4a7fe0",
    "stopped": "#8c8c8c",
}
UNKNOWN = "#eeeeee"  # before the first event we know of
HEARTBEAT = "#222222"
RESTART_MARK = "#222222"
INK = "#1a1a1a"
DPI = 100
WIDTH_INCHES = 10.8  # 1080 px: Telegram shows a photo at up to 1280 px, a phone at its width
WORKFLOW_HEIGHT_INCHES = 8.1
FLEET_BARS = 25  # more bars than this would be unreadable on a phone: the worst are shown
TITLE_SIZE = 26
TEXT_SIZE = 19
TICK_SIZE = 17
NAME_IN_CHART = 22
GAP_FACTOR = 2.5  # samples further apart than this many periods: a gap in the line
_RENDERING = threading.Lock()


@dataclass(frozen=True, slots=True)
class Strip:
    """Where the state band lies in the picture, in pixels (rows counted from the top), and
    the times at its two ends: what a test needs to read a state's colour at a time."""

    left: float
    right: float
    top: float
    bottom: float
    start: datetime
    end: datetime

    def x(self, moment: datetime) -> float:
        share = (moment - self.start) / (self.end - self.start)
        return self.left + share * (self.right - self.left)

    @property
    def y(self) -> float:
        return (self.top + self.bottom) / 2


@dataclass(frozen=True, slots=True)
class Picture:
    """A rendered PNG and what was drawn where (``strip``: the workflow chart's band;
    ``order``: the fleet chart's workflows, top to bottom)."""

    png: bytes
    width: int
    height: int
    strip: Strip | None = None
    order: tuple[str, ...] = ()


def uptime_text(uptime: float | None) -> str:
    """``97.3%``, ``100%``; rounded down, so an outage never reads as 100%. ``off``: None."""
    if uptime is None:
        return "off"
    if uptime >= 1:
        return "100%"
    return f"{math.floor(uptime * 1000) / 10:.1f}%"


def plain(text: str) -> str:
    """A name as matplotlib must see it: ``$`` would start mathtext."""
    return text.replace("$", r"\$")


def clipped(name: str, limit: int = NAME_IN_CHART) -> str:
    return plain(name if len(name) <= limit else name[: limit - 1] + "…")


def workflow_chart(
    history: History,
    heartbeats: Sequence[tuple[float, float]],
    *,
    tz: tzinfo,
    window: str,
    sample_seconds: float = 60.0,
) -> Picture:
    """One workflow: its states as a coloured band with its restarts marked, its heartbeat
    age as a line under it, its uptime in the title. ``window``: how the title names it."""
    with _RENDERING:
        return _workflow_chart(history, heartbeats, tz, window, sample_seconds)


def fleet_chart(histories: Sequence[History], *, tz: tzinfo, window: str) -> Picture:
    """Every workflow's uptime as a bar of its bands, worst first (``history.worst_first``
    order is the caller's); past ``FLEET_BARS`` the worst ones, and a line on the rest."""
    with _RENDERING:
        return _fleet_chart(histories, tz, window)


# -- the workflow chart -----------------------------------------------------------------


def _workflow_chart(
    history: History,
    heartbeats: Sequence[tuple[float, float]],
    tz: tzinfo,
    window: str,
    sample_seconds: float,
) -> Picture:
    figure = _figure(WORKFLOW_HEIGHT_INCHES)
    grid = figure.add_gridspec(
        2, 1, height_ratios=(1, 3), hspace=0.12, left=0.1, right=0.97, top=0.77, bottom=0.12
    )
    band_axes = figure.add_subplot(grid[0])
    age_axes = figure.add_subplot(grid[1], sharex=band_axes)
    start, end = history.start.timestamp(), history.end.timestamp()
    restarts = len(history.restarts)
    title = f"{plain(history.workflow)} · uptime {uptime_text(history.uptime)}"
    _title(figure, title, y=0.93)
    words = [
        (f"{band} {format_duration(history.seconds(band))}", COLOURS[band])
        for band in BANDS
        if history.seconds(band) > 0
    ]
    if restarts:
        words.append((f"▼ {restarts} restart{'' if restarts == 1 else 's'}", RESTART_MARK))
    _key(figure, words or [("no events in this window", INK)], y=0.865, step=0.055)

    band_axes.set_facecolor(UNKNOWN)
    for band in BANDS:
        bars = [
            (span.start.timestamp(), span.seconds) for span in history.spans if span.band == band
        ]
        if bars:
            band_axes.broken_barh(
                bars, (0, 1), facecolors=COLOURS[band], linewidth=0, antialiased=False
            )
    if history.restarts:
        marks = [moment.timestamp() for moment in history.restarts]
        band_axes.plot(
            marks, [1.2] * len(marks), "v", color=RESTART_MARK, markersize=12, clip_on=False
        )
    band_axes.set_ylim(0, 1.4)
    band_axes.set_xlim(start, end)
    band_axes.set_yticks([])
    for side in ("top", "right", "left"):
        band_axes.spines[side].set_visible(False)
    band_axes.tick_params(axis="x", labelbottom=False, length=0)

    _heartbeat_line(age_axes, history, heartbeats, sample_seconds)
    _time_axis(age_axes, history.start, history.end, tz, window)

    figure.draw_without_rendering()
    x0, y0 = (float(value) for value in band_axes.transData.transform((start, 0)))
    x1, y1 = (float(value) for value in band_axes.transData.transform((end, 1)))
    png, width, height = _png(figure)
    strip = Strip(x0, x1, height - y1, height - y0, history.start, history.end)
    return Picture(png, width, height, strip=strip)


def _heartbeat_line(
    axes: Axes,
    history: History,
    heartbeats: Sequence[tuple[float, float]],
    sample_seconds: float,
) -> None:
    axes.set_ylabel("heartbeat age (s)", fontsize=TEXT_SIZE, color=INK)
    axes.tick_params(axis="y", labelsize=TICK_SIZE)
    axes.grid(axis="y", color="#dddddd", linewidth=1)
    for side in ("top", "right"):
        axes.spines[side].set_visible(False)
    if not heartbeats:
        axes.text(
            0.5,
            0.5,
            "no heartbeat samples in this window",
            transform=axes.transAxes,
            ha="center",
            va="center",
            fontsize=TEXT_SIZE,
            color="#777777",
        )
        axes.set_ylim(0, 1)
        axes.set_yticks([])
        return
    xs: list[float] = []
    ys: list[float] = []
    previous: float | None = None
    for moment, age in heartbeats:
        if previous is not None and moment - previous > GAP_FACTOR * sample_seconds:
            xs.append(math.nan)  # no sample meanwhile: a gap, not a straight line across
            ys.append(math.nan)
        xs.append(moment)
        ys.append(age)
        previous = moment
    axes.plot(xs, ys, color=HEARTBEAT, linewidth=2.5)
    top = max(age for _, age in heartbeats)
    axes.set_ylim(0, max(top * 1.15, 10.0))
    axes.yaxis.set_major_locator(_few_ticks())


def _few_ticks() -> Locator:
    from matplotlib.ticker import MaxNLocator

    return MaxNLocator(nbins=4, integer=True)


def _time_axis(axes: Axes, start: datetime, end: datetime, tz: tzinfo, window: str) -> None:
    """Clock times (a day and less) or days (longer), in ``tz``; the window and the zone
    named under them (``last 24 h, CET``)."""
    positions, labels = time_ticks(start, end, tz)
    axes.set_xticks(positions, labels)
    axes.tick_params(axis="x", labelsize=TICK_SIZE)
    axes.set_xlabel(f"{window}, {end.astimezone(tz).tzname() or tz}", fontsize=TEXT_SIZE)
    axes.set_xlim(start.timestamp(), end.timestamp())


def time_ticks(start: datetime, end: datetime, tz: tzinfo) -> tuple[list[float], list[str]]:
    """At most about eight ticks (epoch seconds) on round local times, and their labels:
    local midnights as weekdays past 30 h, round hours down to 2 h, round minutes below.
    Found by walking the window in steps of local wall-clock time, so a zone's DST change
    or half-hour offset still gets round times."""
    span = (end - start).total_seconds()
    grain, form = 900, "%H:%M"
    if span > 30 * 3600:
        every = max(1, math.ceil(span / 86400 / 8))
        form = "%a" if span <= 8 * 86400 else "%d %b"

        def wanted(t: datetime) -> bool:
            return t.hour == 0 and t.minute == 0 and t.toordinal() % every == 0
    elif span > 2 * 3600:
        every = 1 if span <= 6 * 3600 else 2 if span <= 12 * 3600 else 4

        def wanted(t: datetime) -> bool:
            return t.minute == 0 and t.hour % every == 0
    else:
        grain = 60
        every = next((m for m in (5, 10, 15, 30) if span / (m * 60) <= 6), 60)

        def wanted(t: datetime) -> bool:
            return t.minute % every == 0

    first = math.ceil(start.timestamp() / grain) * grain
    positions = [
        float(moment)
        for moment in range(first, math.floor(end.timestamp()) + 1, grain)
        if wanted(datetime.fromtimestamp(moment, tz))
    ]
    return positions, [datetime.fromtimestamp(moment, tz).strftime(form) for moment in positions]


# -- the fleet chart --------------------------------------------------------------------


def _fleet_chart(histories: Sequence[History], tz: tzinfo, window: str) -> Picture:
    shown = list(histories[:FLEET_BARS])
    rest = histories[FLEET_BARS:]
    rows = max(len(shown), 1)
    header_inches, row_inches = 2.2, 0.55
    height_inches = header_inches + row_inches * rows + 0.4
    figure = _figure(height_inches)
    top = 1 - header_inches / height_inches
    bottom = 0.4 / height_inches
    axes = figure.add_axes((0.3, bottom, 0.58, top - bottom))
    count = len(histories)
    _title(figure, f"Uptime · {plain(window)} · worst first", y=1 - 0.55 / height_inches)
    if rest:
        lowest = min((h.uptime for h in rest if h.uptime is not None), default=None)
        floor = f"; the other {len(rest)} ≥ {uptime_text(lowest)}" if lowest is not None else ""
        note = f"the worst {len(shown)} of {count}{floor}"
    else:
        note = f"{count} workflow{'' if count == 1 else 's'}"
    figure.text(0.03, 1 - 1.05 / height_inches, note, fontsize=TEXT_SIZE, color=INK)
    present = [band for band in BANDS if any(h.seconds(band) > 0 for h in histories)]
    key = [(band, COLOURS[band]) for band in present]
    _key(figure, key, y=1 - 1.6 / height_inches, step=0.45 / height_inches)

    positions = list(range(len(shown)))
    axes.barh(positions, [100] * len(shown), color=UNKNOWN, height=0.7, linewidth=0)
    lefts = [0.0] * len(shown)
    for band in BANDS:
        widths = [100 * h.seconds(band) / max(h.window_seconds, 1e-9) for h in shown]
        if any(widths):
            axes.barh(positions, widths, left=lefts, color=COLOURS[band], height=0.7, linewidth=0)
            lefts = [left + width for left, width in zip(lefts, widths, strict=True)]
    for position, one in zip(positions, shown, strict=True):
        axes.text(
            102, position, uptime_text(one.uptime), va="center", fontsize=TEXT_SIZE, color=INK
        )
    axes.set_yticks(positions, [clipped(h.workflow) for h in shown], fontsize=TEXT_SIZE)
    axes.set_ylim(len(shown) - 0.5 if shown else 0.5, -0.5)  # the worst at the top
    axes.set_xlim(0, 100)
    axes.set_xticks([])
    for side in ("top", "right", "bottom"):
        axes.spines[side].set_visible(False)
    axes.tick_params(axis="y", length=0)
    if not shown:
        axes.text(0.5, 0.5, "no workflows", transform=axes.transAxes, ha="center")
    png, width, height = _png(figure)
    return Picture(png, width, height, order=tuple(h.workflow for h in shown))


# -- shared -----------------------------------------------------------------------------


def _figure(height_inches: float) -> Figure:
    """A figure with an Agg canvas of its own: no pyplot, no global state."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(WIDTH_INCHES, height_inches), dpi=DPI, facecolor="white")
    FigureCanvasAgg(figure)  # it attaches itself to the figure
    return figure


def _title(figure: Figure, text: str, *, y: float) -> None:
    """Bold, large, on one line: smaller type for a long one rather than a cut."""
    title = figure.text(0.03, y, text, fontsize=TITLE_SIZE, weight="bold", color=INK)
    size = TITLE_SIZE
    while size > TICK_SIZE and title.get_window_extent().width > 0.94 * figure.bbox.width:
        size -= 1
        title.set_fontsize(size)


def _key(figure: Figure, words: Sequence[tuple[str, str]], *, y: float, step: float) -> None:
    """Coloured words, left to right, on a second line (``step`` lower) when one is full:
    a legend without its box."""
    left = x = 0.03
    for word, colour in words:
        text = figure.text(x, y, word, fontsize=TEXT_SIZE, color=colour, weight="bold")
        width = text.get_window_extent().width / figure.bbox.width
        if x > left and x + width > 0.97:
            x, y = left, y - step
            text.set_position((x, y))
        x += width + 0.025


def _png(figure: Figure) -> tuple[bytes, int, int]:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI)
    width, height = (round(side) for side in figure.bbox.size)
    return buffer.getvalue(), width, height
