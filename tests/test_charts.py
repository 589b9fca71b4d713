"""Pictures in the chat: ``/chart``, the 📈 button, and the digest's chart.

A history is rebuilt from the control DB's events by fixed rules
(``bot.observe.history``); the charts are real PNGs, opened here and read
back: the size Telegram gets, and the band's colour at known times is the
colour of the state the events put it in. Through the real bot the photo goes
up as a multipart ``sendPhoto`` to the stand-in Bot API, which records its
bytes.
"""

from __future__ import annotations

import asyncio
import io
import threading
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from PIL import Image

from bot.digest import DigestChart, DigestScheduler
from bot.observe import pictures
from bot.observe.charts import (
    COLOURS,
    FLEET_BARS,
    HEARTBEAT,
    UNKNOWN,
    Picture,
    fleet_chart,
    time_ticks,
    uptime_text,
    workflow_chart,
)
from bot.observe.heartbeats import HeartbeatSampler, HeartbeatStore
from bot.observe.history import Band, History, history, read_histories, worst_first
from bot.observe.pictures import Charts
from bot.transport import Document
from supervisor.control import ControlDB
from supervisor.events import (
    Crashed,
    EventRecord,
    Restarted,
    Started,
    Stopped,
    WorkflowStatus,
)
from tests.bot_harness import COMMAND_CHAT, USER, BotRig, bot_running, worker_table
from tests.conditions import wait_until
from tests.console_harness import console_running
from tests.fakes.botapi import PNG_SIGNATURE, SentMessage
from tests.outbox_rig import START, Clock, RecordingChat, notifier_on

END = datetime(2025, 11, 24, 16, 0, tzinfo=UTC)
DAY_START = END - timedelta(hours=24)
BERLIN = ZoneInfo("Europe/Berlin")


def at(hours: float) -> datetime:
    """``hours`` after the window opened."""
    return DAY_START + timedelta(hours=hours)


def event(hours: float, kind: str, workflow: str = "api") -> EventRecord:
    return EventRecord(at(hours), workflow, kind, "")


# A day scripted hour by hour: what the band must show at each time.
DAY = [
    event(6, "crashed"),
    event(7, "started"),
    event(7, "restarted"),
    event(12, "hung"),
    event(13, "gave_up"),
    event(14, "started"),
    event(16, "paused"),
    event(18, "resumed"),
    event(18, "started"),
    event(21, "stopped"),
]
EXPECTED: list[tuple[float, Band]] = [
    (3, "running"),
    (6.5, "crashed"),
    (10, "running"),
    (12.5, "hung"),
    (13.5, "hung"),  # gave up after a hang: still down for the hang
    (15, "running"),
    (17, "paused"),
    (19.5, "running"),
    (22.5, "stopped"),
]


def scripted_day() -> History:
    return history("api", DAY, DAY_START, END, before=event(-1, "started"))


def rgb(colour: str) -> tuple[int, int, int]:
    value = colour.lstrip("#")
    red, green, blue = (int(value[i : i + 2], 16) for i in (0, 2, 4))
    return red, green, blue


def opened(png: bytes) -> Image.Image:
    assert png.startswith(PNG_SIGNATURE)
    image = Image.open(io.BytesIO(png))
    assert image.format == "PNG"
    return image.convert("RGB")


# -- states from events ----------------------------------------------------------------


def test_states_follow_the_events_by_the_documented_rules() -> None:
    day = scripted_day()
    for hours, band in EXPECTED:
        assert day.band_at(at(hours)) == band, hours
    assert day.restarts == (at(7),)
    assert day.seconds("crashed") == 3600
    assert day.seconds("hung") == 2 * 3600
    assert day.seconds("paused") == 2 * 3600
    assert day.seconds("stopped") == 3 * 3600
    # Uptime: running over the time it was meant to run; pausing and stopping are choices.
    assert day.seconds("running") == 16 * 3600
    assert day.uptime == pytest.approx(16 / 19)
    assert uptime_text(day.uptime) == "84.2%"


def test_before_the_first_event_known_the_state_is_unknown_and_not_counted() -> None:
    late = history("new", [event(20, "started", "new")], DAY_START, END)
    assert late.band_at(at(10)) is None
    assert late.spans[0].start == at(20)
    assert late.uptime == 1.0
    assert uptime_text(late.uptime) == "100%"
    idle = history("idle", [], DAY_START, END, before=event(-5, "stopped", "idle"))
    assert idle.uptime is None  # never meant to run in the window
    assert uptime_text(idle.uptime) == "off"
    nearly = history("n", [event(23.999, "crashed", "n")], DAY_START, END, event(-1, "started"))
    assert uptime_text(nearly.uptime) == "99.9%"  # an outage never reads as 100%


def test_worst_first_puts_the_lowest_uptime_first_and_the_idle_last() -> None:
    down_long = history("b", [event(2, "crashed", "b")], DAY_START, END, event(-1, "started"))
    down_short = history("a", [event(20, "crashed", "a")], DAY_START, END, event(-1, "started"))
    healthy = history("c", [], DAY_START, END, event(-1, "started", "c"))
    idle = history("d", [], DAY_START, END, event(-1, "paused", "d"))
    order = [h.workflow for h in worst_first([idle, healthy, down_short, down_long])]
    assert order == ["b", "a", "c", "d"]


@pytest.fixture
def control(tmp_path: Path) -> Iterator[ControlDB]:
    db = ControlDB(f"sqlite:///{tmp_path / 'control.db'}")
    yield db
    db.close()


def crash(workflow: str, moment: datetime) -> Crashed:
    return Crashed(
        workflow=workflow,
        time=moment,
        incident="i1",
        attempt=0,
        max_attempts=3,
        will_restart=True,
        exit_code=1,
    )


def restart(workflow: str, moment: datetime) -> Restarted:
    return Restarted(workflow=workflow, time=moment, reason="crash", attempt=1, max_attempts=3)


def test_histories_are_read_from_the_event_log_with_the_state_before_the_window(
    control: ControlDB,
) -> None:
    control.record(Started(workflow="api", time=at(-30), pid=1))  # long before: still running
    control.record(Started(workflow="etl", time=at(-2), pid=2))
    control.record(Stopped(workflow="etl", time=at(-1)))
    control.record(crash("api", at(6)))
    control.record(Started(workflow="api", time=at(7), pid=3))
    control.record(restart("api", at(7)))
    control.record(Started(workflow="etl", time=at(30), pid=4))  # after the window
    api, etl, never = read_histories(control.engine, ["api", "etl", "never"], DAY_START, END)
    assert api.band_at(at(1)) == "running"
    assert api.band_at(at(6.5)) == "crashed"
    assert api.restarts == (at(7),)
    assert api.uptime == pytest.approx(23 / 24)
    assert etl.band_at(at(12)) == "stopped"
    assert etl.uptime is None
    assert never.spans == ()


# -- the pictures ----------------------------------------------------------------------


def beats(start: float, end: float, age: float) -> list[tuple[float, float]]:
    return [(moment, age) for moment in range(int(start), int(end), 60)]


def test_a_workflow_chart_is_a_png_whose_band_has_the_states_colours_at_known_times() -> None:
    samples = beats(at(0).timestamp(), at(6).timestamp(), 8.0)
    picture = workflow_chart(scripted_day(), samples, tz=BERLIN, window="last 24 h")
    image = opened(picture.png)
    assert image.size == (picture.width, picture.height) == (1080, 810)
    strip = picture.strip
    assert strip is not None
    for hours, band in EXPECTED:
        pixel = image.getpixel((round(strip.x(at(hours))), round(strip.y)))
        assert pixel == rgb(COLOURS[band]), (hours, band)
    late = history("new", [event(20, "started", "new")], DAY_START, END)
    unknown = workflow_chart(late, [], tz=BERLIN, window="last 24 h")
    assert unknown.strip is not None
    pixel = opened(unknown.png).getpixel((round(unknown.strip.x(at(10))), round(unknown.strip.y)))
    assert pixel == rgb(UNKNOWN)


def line_pixels_below_the_band(picture: Picture) -> int:
    """How many pixels under the band have the heartbeat line's colour."""
    assert picture.strip is not None
    image = opened(picture.png)
    box = (int(picture.strip.left), int(picture.strip.bottom) + 10, image.width, image.height)
    colours = image.crop(box).getcolors(1 << 24) or []
    return sum(count for count, colour in colours if colour == rgb(HEARTBEAT))


def test_the_heartbeat_age_is_a_line_where_there_are_samples() -> None:
    samples = beats(at(1).timestamp(), at(20).timestamp(), 8.0)
    with_line = workflow_chart(scripted_day(), samples, tz=BERLIN, window="last 24 h")
    without = workflow_chart(scripted_day(), [], tz=BERLIN, window="last 24 h")
    assert line_pixels_below_the_band(with_line) > 1500  # a line across most of the width
    assert line_pixels_below_the_band(without) < 100  # a few of the labels' edges


def test_the_fleet_chart_shows_the_worst_first_and_at_most_a_phones_worth() -> None:
    histories = [
        history(f"wf-{i:03d}", [event(i / 10, "crashed", f"wf-{i:03d}")], DAY_START, END)
        for i in range(FLEET_BARS + 15)
    ]
    ordered = worst_first([*histories, scripted_day()])
    many = fleet_chart(ordered, tz=BERLIN, window="last 24 h")
    assert many.order == tuple(h.workflow for h in ordered[:FLEET_BARS])
    assert opened(many.png).size == (many.width, many.height)
    few = fleet_chart(ordered[:3], tz=BERLIN, window="last 24 h")
    assert few.width == many.width == 1080
    assert few.height < many.height < 2000  # the phone scrolls a little, not a mile


def test_time_ticks_fall_on_round_local_times_across_a_dst_change_and_odd_zones() -> None:
    for zone in ("Europe/Berlin", "Asia/Kolkata", "UTC"):
        tz = ZoneInfo(zone)
        dst = datetime(2026, 3, 29, 12, 0, tzinfo=UTC)
        for span in (timedelta(days=7), timedelta(hours=24), timedelta(minutes=50)):
            positions, labels = time_ticks(dst - span, dst, tz)
            assert 2 <= len(positions) <= 9, (zone, span, labels)
            for position in positions:
                local = datetime.fromtimestamp(position, tz)
                assert local.minute % 5 == 0
                assert local.second == 0
                if span >= timedelta(hours=24):
                    assert local.minute == 0


async def test_charts_are_read_and_drawn_off_the_event_loop(
    control: ControlDB, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A render that waits for the loop to act can only finish if it runs beside it."""
    released, entered, went_on = threading.Event(), threading.Event(), []

    def drawing(*args: object, **kwargs: object) -> Picture:
        entered.set()
        went_on.append(released.wait(10))  # the loop, not this thread, sets it
        return Picture(b"png", 1, 1)

    monkeypatch.setattr(pictures, "fleet_chart", drawing)
    charts = Charts(control.engine, lambda: ["api"], clock=lambda: END)
    drawn = asyncio.create_task(charts.fleet("7d"))
    await wait_until(entered.is_set)
    released.set()
    document = await drawn
    assert went_on == [True]
    assert document.filename == "fleet-7d.png"
    assert document.kind == "photo"


# -- heartbeat samples -----------------------------------------------------------------


class Statuses:
    def __init__(self, statuses: Sequence[WorkflowStatus]) -> None:
        self.statuses = list(statuses)

    async def __call__(self) -> Sequence[WorkflowStatus]:
        return self.statuses


async def test_the_sampler_keeps_live_heartbeat_ages_and_forgets_old_ones(
    control: ControlDB,
) -> None:
    store = HeartbeatStore(control.engine)
    clock = Clock(START)
    statuses = Statuses(
        [
            WorkflowStatus("api", "running", heartbeat_age=4.0),
            WorkflowStatus("etl", "stopped", heartbeat_age=900.0),  # no process: no sample
            WorkflowStatus("new", "starting"),  # no heartbeat yet
        ]
    )
    sampler = HeartbeatSampler(store, statuses, clock=clock)
    await sampler.sample()
    clock.now += 9 * 86400  # past what the 7-day chart needs; the next sample forgets it
    statuses.statuses = [WorkflowStatus("api", "hung", heartbeat_age=301.0)]
    await sampler.sample()
    assert store.read("api", 0, clock.now) == [(clock.now, 301.0)]
    assert store.read("etl", 0, clock.now) == []


# -- the digest ------------------------------------------------------------------------


async def test_the_digest_carries_the_fleet_chart_when_something_was_down(
    control: ControlDB,
) -> None:
    chat, clock = RecordingChat(), Clock()  # START: 24 Nov 16:00 UTC
    sent: list[tuple[Document, int]] = []

    async def send(picture: Document) -> None:
        sent.append((picture, len(chat.delivered)))  # how many messages went before it

    charts = Charts(control.engine, lambda: ["api", "etl"], tz=BERLIN)
    started = datetime.fromtimestamp(START, UTC)
    control.record(Started(workflow="api", time=started - timedelta(hours=1), pid=1))
    control.record(Started(workflow="etl", time=started - timedelta(hours=1), pid=2))
    async with notifier_on(control.engine, chat, clock, BERLIN) as notifier:
        digest = DigestScheduler(
            control.engine, Statuses([]), notifier, period=0, at=time(9), tz=BERLIN, clock=clock
        )
        digest.chart = DigestChart(draw=charts.digest, send=send)
        await digest.tick()  # the first digest's baseline
        control.record(crash("api", started + timedelta(hours=2)))
        control.record(restart("api", started + timedelta(hours=2, minutes=5)))
        clock.now = datetime(2025, 11, 25, 9, 0, tzinfo=BERLIN).timestamp()
        await digest.tick()
        [(picture, before)] = sent
        assert before == 1  # the digest's words went first
        assert picture.kind == "photo"
        opened(picture.data)
        assert picture.caption.startswith("📋 Uptime since 24 Nov 17:00 CET; 1 down at times")
        clock.now += 86400  # a day without an outage: the digest comes alone
        await digest.tick()
        await chat.wait_for(2)
        assert len(sent) == 1


# -- through the bot -------------------------------------------------------------------


# The first chart of a process imports matplotlib and loads its fonts: on a busy 2-core
# machine under pytest -n 4 that alone takes seconds.
FIRST_CHART_SECONDS = 30.0


async def answer(rig: BotRig, text: str) -> SentMessage:
    """The one reply to ``text`` (a photo, or a line), however long a first chart takes."""
    seen = {m.message_id for m in rig.fake.sent_matching()}
    rig.fake.add_message(text, COMMAND_CHAT, USER)
    [reply] = await rig.fake.wait_for_sent(
        lambda m: m.chat_id == COMMAND_CHAT and m.message_id not in seen,
        timeout=FIRST_CHART_SECONDS,
    )
    return reply


def photos(rig: BotRig) -> list[SentMessage]:
    return rig.fake.sent_matching(lambda m: m.photo is not None)


def png_size(message: SentMessage) -> tuple[int, int]:
    assert message.photo is not None
    return opened(message.photo.data).size


async def test_chart_through_the_bot_sends_photos_and_says_what_would_work(
    tmp_path: Path,
) -> None:
    async with bot_running(tmp_path, [worker_table(tmp_path)]) as rig:
        await rig.wait_state("worker", "running")
        one = await answer(rig, "/chart worker")
        assert one.photo is not None
        assert one.photo.filename == "worker-24h.png"
        assert png_size(one) == (1080, 810)
        assert one.text.startswith("📈 <b>worker</b>, last 24 h: uptime 100%, 0 restarts")
        assert one.chat_id == COMMAND_CHAT
        week = await answer(rig, "/chart worker 7d")
        assert week.photo is not None
        assert week.text.startswith("📈 <b>worker</b>, last 7 days")
        bars = await answer(rig, "/chart")
        assert bars.photo is not None
        assert bars.photo.filename == "fleet-24h.png"
        assert png_size(bars)[0] == 1080
        assert bars.text.startswith("📈 Uptime, last 24 h: no outage in 1 workflow")
        usage = await rig.ask("/chart worker 9d")
        assert usage == "usage: /chart [NAME] [24h|7d] (a window of 24h or 7d)"
        assert await rig.ask("/chart 9d") == usage
        assert "unknown workflow 'nope'; known: worker" in await rig.ask("/chart nope")
        assert len(photos(rig)) == 3  # the refusals are lines, not pictures
        # The 📈 button of /status NAME is the same chart.
        [detail] = await rig.send("/status worker")
        assert detail.reply_markup is not None
        data = [b["callback_data"] for row in detail.reply_markup["inline_keyboard"] for b in row]
        assert "chart:worker" in data
        seen = {m.message_id for m in rig.fake.sent_matching()}
        rig.fake.add_callback("chart:worker", COMMAND_CHAT, USER, detail.message_id)
        [pressed] = await rig.fake.wait_for_sent(
            lambda m: m.message_id not in seen and m.photo is not None,
            timeout=FIRST_CHART_SECONDS,
        )
        assert png_size(pressed) == (1080, 810)


async def test_a_chart_that_cannot_be_sent_is_one_line_through_the_outbox(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bot import telegram_app

    monkeypatch.setattr(telegram_app, "DOCUMENT_MAX_WAIT_SECONDS", 0.5)
    async with bot_running(tmp_path, [worker_table(tmp_path)]) as rig:
        rig.fake.fail_next("sendPhoto", 400)  # refused: said at once, no retry
        text = (await answer(rig, "/chart worker")).text
        assert text.startswith("Could not send worker-24h.png (")
        assert text.endswith("; try /chart again later.")
        assert not photos(rig)


async def test_the_console_writes_the_chart_and_says_where(tmp_path: Path) -> None:
    async with console_running(tmp_path, [worker_table(tmp_path)]) as console:
        await console.wait_printed("Type /help")
        console.type("/chart worker")
        await console.wait_printed("the picture is ", timeout=FIRST_CHART_SECONDS)
        path = console.supervisor.settings.logs_dir.parent / "charts" / "worker-24h.png"
        assert f"the picture is {path}" in console.printed
        await wait_until(path.exists)
        assert path.read_bytes().startswith(PNG_SIGNATURE)
        assert "\x89PNG" not in console.printed  # not dumped on the terminal
