"""B3: every chat message is valid Telegram HTML within 4096 characters.

Rendering is pure, so these are property-style loops over nasty inputs
(markup, entities, 10,000-character strings, emoji, empty strings) through
every renderer and every alert. Each message is checked the way Telegram
checks it (``tests.fakes.botapi.check_text``), is at most 4096 characters
even before entity parsing, and shows each dynamic string exactly as given:
escaped once, never twice, never raw.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

import pytest

from bot.alerts import ERROR_CLIP, AlertComposer
from bot.cost import cost_messages, usd
from bot.outbox import Alert
from bot.render import detail, names_message, overview, status_line, tail_message
from bot.text import (
    ELLIPSIS,
    TELEGRAM_LIMIT,
    Message,
    clip,
    clip_html,
    clip_lines_from_top,
    esc,
    esc_clip,
    format_duration,
    pack,
    parse_duration,
)
from bot.transport import html_to_text
from supervisor.diagnosis.types import Quote, Verdict
from supervisor.events import (
    EVENT_TYPES,
    BudgetPaused,
    BudgetResumed,
    BudgetWarning,
    Crashed,
    Diagnosed,
    ErrorReported,
    Event,
    EventRecord,
    Finished,
    GaveUp,
    HealApplied,
    HealProposed,
    HealRolledBack,
    Hung,
    IncidentClosed,
    OwnSpend,
    Paused,
    Recovered,
    Reloaded,
    Restarted,
    Resumed,
    SpendSummary,
    Started,
    StateReadable,
    StateUnreadable,
    StatusChanged,
    Stopped,
    WorkflowStatus,
)
from tests.fakes.botapi import BotAPIError, check_text

NOW = datetime(2026, 11, 24, 11, 42, 15, tzinfo=UTC)
SHORT_NASTY = [
    "<script>&",
    "</pre>",
    "&amp;",
    "&lt;b&gt;",
    "a<b>c</b>",
    "</b></i><pre>",
    "&#x41; &#65; &nbsp",
    "😀🚀 ünïcødé ✓ 中文",
    "line one\nline two",
    "x" * 50,
]
LONG_NASTY = ["x" * 10_000, "<" * 10_000, "&" * 10_000, "😀" * 10_000, "</pre>&amp;" * 1000]
NASTY = [*SHORT_NASTY, *LONG_NASTY, ""]
NAME = "wf-Name_1.x"  # the config allows [A-Za-z0-9][A-Za-z0-9_.-]{0,63}


def assert_valid(text: str) -> str:
    """Telegram would accept ``text`` in HTML mode, and it fits 4096 chars even unparsed."""
    try:
        check_text(text, "HTML")
    except BotAPIError as error:  # pragma: no cover - the failure message is the point
        pytest.fail(f"Telegram would refuse {text[:200]!r}…: {error.description}")
    assert len(text) <= TELEGRAM_LIMIT, f"{len(text)} chars"
    return text


def assert_all_valid(messages: Iterable[Message | Alert]) -> list[str]:
    return [assert_valid(message.text) for message in messages]


def shows(text: str, value: str) -> bool:
    """``value`` is visible in the rendered HTML exactly as given (escaped once)."""
    return value in html_to_text(text)


def wf(name: str = NAME, **fields: object) -> WorkflowStatus:
    values: dict[str, object] = {"state": "running", "heartbeat_age": 3.0} | fields
    return WorkflowStatus(name=name, **values)  # type: ignore[arg-type]


# -- overview, pack ------------------------------------------------------------------------


@pytest.mark.parametrize("count", [100, 500])
def test_overview_splits_long_lists_and_loses_no_workflow(count: int) -> None:
    statuses = [
        wf(f"wf-{i:03d}", status=SHORT_NASTY[i % len(SHORT_NASTY)], summary=NASTY[i % len(NASTY)])
        for i in range(count)
    ]
    texts = assert_all_valid(overview(statuses))
    assert len(texts) > 1
    joined = "\n".join(texts)
    for i in range(count):
        assert joined.count(f"<b>wf-{i:03d}</b>") == 1, f"wf-{i:03d} lost or repeated"
    assert texts[0].startswith(f"<b>{count} workflows</b>")


def test_overview_escapes_every_field_once() -> None:
    for value in NASTY:
        for status in (
            wf(value),
            wf(status=value),
            wf(summary=value),
            wf(state="paused", summary=value),
        ):
            [text] = assert_all_valid(overview([status]))
            if value in SHORT_NASTY and "\n" not in value and len(value) < 40:
                assert shows(text, value), (value, text)
    [text] = assert_all_valid(overview([wf(summary="<script>&")]))
    assert "&lt;script&gt;&amp;" in text


def test_status_line_clips_long_fields_before_escaping() -> None:
    for value in LONG_NASTY:
        line = status_line(wf(value, status=value, summary=value))
        assert len(line) < 1000
        assert_valid(line)


def test_overview_of_nothing_says_so() -> None:
    assert assert_all_valid(overview([])) == ["No workflows configured."]


def test_pack_clips_a_single_overlong_block_between_entities_and_closes_its_tags() -> None:
    for value in LONG_NASTY:
        block = f"<b>{esc(value)}</b> <pre>{esc(value)}</pre>"
        for header in ("", "<b>header</b>"):
            texts = assert_all_valid(pack([block, "<i>after</i>", block], header=header))
            assert any("<i>after</i>" in text for text in texts)
            assert all(text.strip() for text in texts)


def test_pack_never_leaves_an_empty_message_or_splits_a_block() -> None:
    blocks = [f"<code>{i}</code> " + "y" * 1000 for i in range(40)]
    texts = assert_all_valid(pack(blocks, header="<b>h</b>"))
    for i in range(40):
        assert sum(f"<code>{i}</code> " + "y" * 1000 in text for text in texts) == 1


# -- detail --------------------------------------------------------------------------------


def events(count: int, value: str) -> list[EventRecord]:
    return [
        EventRecord(NOW - timedelta(seconds=i), NAME, value or "crashed", value)
        for i in range(count)
    ]


def test_detail_with_huge_error_many_events_and_nasty_text_fits_one_message() -> None:
    for value in NASTY:
        status = wf(
            status=value,
            summary=value,
            last_error=value or None,
            db_problem=value or None,
            pid=4242,
            started_at=NOW - timedelta(hours=3),
            restarts=2,
            max_restarts=20,
            next_restart_at=NOW + timedelta(seconds=30),
            exit_code=1,
        )
        for event_count in (0, 5, 300):
            message = detail(status, events(event_count, value), [value] * 50, NOW)
            text = assert_valid(message.text)
            assert [b.data for b in message.buttons] == [f"restart:{NAME}", f"tail:{NAME}"]
            if value in SHORT_NASTY and event_count == 5:
                assert shows(text.split("<b>last error</b>", 1)[1], value), value


def test_detail_shows_a_long_error_clipped_in_a_closed_pre_block() -> None:
    error = "Traceback <module> & more\n" * 1000
    text = assert_valid(detail(wf(last_error=error), [], [], NOW).text)
    shown = html_to_text(text.split("<pre>", 1)[1].removesuffix("</pre>"))
    assert shown.endswith(ELLIPSIS)
    assert error.startswith(shown.removesuffix(ELLIPSIS))
    assert len(shown) > 1000
    assert "&lt;module&gt; &amp; more" in text


# -- tail ----------------------------------------------------------------------------------


def tail_body(text: str) -> str:
    return html_to_text(text.split("<pre>", 1)[1].removesuffix("</pre>"))


def test_tail_of_a_10000_char_line_keeps_its_end() -> None:
    for value in LONG_NASTY:
        text = assert_valid(tail_message(NAME, [value]).text)
        body = tail_body(text)
        assert body.startswith(ELLIPSIS)
        assert value.endswith(body.removeprefix(ELLIPSIS))
        assert len(body) > 500


def test_tail_of_200_nasty_lines_keeps_the_newest() -> None:
    lines = [f"{i:03d} {NASTY[i % len(NASTY)][:300]}" for i in range(200)]
    text = assert_valid(tail_message("<script>&", lines, following=" (following)").text)
    assert text.startswith("<b>&lt;script&gt;&amp;</b> log (following)\n<pre>")
    body = tail_body(text)
    assert body.endswith(lines[-1])
    assert "\n".join(lines).endswith(body)


def test_tail_cut_never_splits_an_entity() -> None:
    """Lines of '<' and '&' escape to 4-5 chars; try every cut offset around the limit."""
    for char in ("<", "&", ">"):
        for extra in range(12):
            line = "a" + char * (800 + extra) + "z"
            for lines in ([line], ["old line"] * 3 + [line] * 2):
                body = tail_body(assert_valid(tail_message(NAME, lines).text))
                assert line.endswith(body.split("\n")[0].removeprefix(ELLIPSIS)), body[:20]


def test_tail_of_nothing_says_empty() -> None:
    assert tail_body(assert_valid(tail_message(NAME, []).text)) == "(empty)"
    assert_valid(tail_message(NAME, [""]).text)


# -- names ---------------------------------------------------------------------------------


def test_names_message_escapes_and_fits() -> None:
    for value in NASTY:
        text = assert_valid(names_message([wf(value)]).text)
        if value in SHORT_NASTY and "\n" not in value:
            assert shows(text, value)
    assert "none configured" in assert_valid(names_message([]).text)


def test_names_message_with_500_workflows_counts_the_rest() -> None:
    statuses = [wf(f"workflow-{i:03d}-" + "n" * 40) for i in range(500)]
    text = assert_valid(names_message(statuses).text)
    shown = text.count("<code>")
    assert 0 < shown < 500
    assert text.endswith(f"… and {500 - shown} more; /status lists them all")


# -- alerts --------------------------------------------------------------------------------


def incident(kind: type[Crashed] | type[Hung], **fields: object) -> Crashed | Hung:
    base: dict[str, object] = {
        "workflow": NAME,
        "time": NOW,
        "incident": "i1",
        "attempt": 2,
        "max_attempts": 20,
        "will_restart": True,
        "next_restart_in": 30.0,
    }
    if kind is Hung:
        base |= {"heartbeat_age": 301.0, "threshold": 300.0}
    return kind(**(base | fields))  # type: ignore[arg-type]


def sample_events(value: str) -> list[Event]:
    """One event of every type, every free-text field set to ``value``."""
    tail = tuple(f"{i:02d} {value[:400]} " + "l" * 300 for i in range(50))
    common: dict[str, object] = {"workflow": NAME, "time": NOW}
    return [
        Started(**common, pid=1),  # type: ignore[arg-type]
        Stopped(**common, reason=value),  # type: ignore[arg-type]
        Finished(**common, summary=value, note=value[:200]),  # type: ignore[arg-type]
        incident(Crashed, exit_code=1, log_tail=tail),
        incident(Crashed, will_restart=False, signal="SIGKILL", log_tail=(value[:500],)),
        incident(Hung, heartbeat_age=None),
        Restarted(**common, reason="crash", attempt=3, max_attempts=20, incident="i1", pid=7),  # type: ignore[arg-type]
        Restarted(  # as a bot that restarted mid-incident sees it: no headline remembered
            **common,  # type: ignore[arg-type]
            reason="hang",
            attempt=3,
            max_attempts=20,
            incident="i2",
            cause="hang",
            failures=3,
            last_detail=value,
        ),
        GaveUp(**common, incident="i1", attempts=20, cause="crash", last_detail=value),  # type: ignore[arg-type]
        Diagnosed(
            **common,  # type: ignore[arg-type]
            incident="i1",
            verdict=Verdict(
                workflow=NAME,
                cause=value,
                category="bug",
                confidence="low",
                evidence=(Quote(evidence_id=value[:40], quote=value),),
                next_steps=(value,),
                restart_helps=None,
                source="model",
                note=value,
            ),
        ),
        Recovered(**common, incident="i1", down_seconds=95.0, last_detail=value),  # type: ignore[arg-type]
        IncidentClosed(
            **common,  # type: ignore[arg-type]
            incident="i3",
            how="stopped",
            cause="crash",
            failures=2,
            last_detail=value,
        ),
        StateUnreadable(**common, reason=value),  # type: ignore[arg-type]
        StateReadable(**common, unreadable_seconds=61.0),  # type: ignore[arg-type]
        ErrorReported(**common, text=value),  # type: ignore[arg-type]
        StatusChanged(**common, old="running", new="error", summary=value),  # type: ignore[arg-type]
        Paused(**common),  # type: ignore[arg-type]
        Resumed(**common),  # type: ignore[arg-type]
        BudgetWarning(**common, spent_usd=4.01, budget_usd=5.0),  # type: ignore[arg-type]
        BudgetPaused(
            **common,  # type: ignore[arg-type]
            spent_usd=5.2,
            budget_usd=5.0,
            allowance_usd=5.0,
            resumes_at=NOW + timedelta(hours=12),
        ),
        BudgetResumed(
            **common,  # type: ignore[arg-type]
            how="once",
            budget_usd=5.0,
            allowance_usd=10.0,
            paused_at=NOW,
            by=value[:100],
        ),
        Reloaded(**common, path=f"/srv/{value[:200]}/flow.py"),  # type: ignore[arg-type]
        HealProposed(
            **common,  # type: ignore[arg-type]
            proposal="p1",
            files=2,
            added=6,
            removed=2,
            gates=(("paths", True, value[:300]), ("smoke", False, value[:300])),
            rationale=(value, value, value),
            cost_usd=0.04,
            diff=f"--- a/{value}\n+++ b/{value}\n" + value * 3,
        ),
        HealApplied(
            **common,  # type: ignore[arg-type]
            proposal="p1",
            commit="a" * 40,
            previous="b" * 40,
            approver=value[:100],
            probation_seconds=600.0,
        ),
        HealRolledBack(**common, proposal="p1", commit="c" * 40, reason=value),  # type: ignore[arg-type]
    ]


def test_samples_cover_every_event_type() -> None:
    assert {type(event) for event in sample_events("x")} == set(EVENT_TYPES)


def test_every_alert_of_every_event_is_valid_html_within_the_limit() -> None:
    for value in NASTY:
        composer = AlertComposer()
        for event in sample_events(value):
            for alert in composer.alerts(event):
                check_text(alert.text, "HTML")
                assert len(html_to_text(alert.text)) <= TELEGRAM_LIMIT


def test_crash_alert_with_50_long_log_lines_keeps_the_newest() -> None:
    tail = tuple(f"{i:02d} <err> & " + "l" * 300 for i in range(50))
    [alert] = AlertComposer().alerts(incident(Crashed, exit_code=3, log_tail=tail))
    text = assert_valid(alert.text)
    assert html_to_text(text).count("\n") > 2
    assert "49 &lt;err&gt; &amp; " in text
    assert "exit code 3" in text
    assert alert.key == f"incident:{NAME}:i1"


def test_restart_after_crash_edits_the_same_message_and_recovery_closes_it() -> None:
    composer = AlertComposer()
    [crash] = composer.alerts(incident(Crashed, exit_code=1))
    restart = Restarted(
        workflow=NAME, time=NOW, reason="crash", attempt=3, max_attempts=20, incident="i1"
    )
    [edit] = composer.alerts(restart)
    assert edit.key == crash.key is not None
    assert "attempt 3/20" in assert_valid(edit.text)
    [closing, note] = composer.alerts(
        Recovered(workflow=NAME, time=NOW, incident="i1", down_seconds=95)
    )
    assert closing.key == crash.key
    assert note.key is None
    assert "1m 35s" in assert_valid(closing.text)
    assert composer.alerts(restart) == []  # the incident is closed


def test_error_alert_keeps_both_ends_of_a_10k_text_within_its_clip() -> None:
    text = "<script>&" + "e" * 10_000 + "ValueError: the end"
    [alert] = AlertComposer().alerts(ErrorReported(workflow=NAME, time=NOW, text=text))
    shown = assert_valid(alert.text).split("<pre>", 1)[1].removesuffix("</pre>")
    assert len(shown) <= ERROR_CLIP
    assert shown.startswith("&lt;script&gt;&amp;")
    assert shown.endswith("ValueError: the end")
    assert "characters cut" in shown


def test_gave_up_finished_status_and_reload_alerts_show_their_text() -> None:
    composer = AlertComposer()
    value = "<script>&"
    for event in sample_events(value):
        if isinstance(event, GaveUp | Finished | StatusChanged | Reloaded):
            [alert] = composer.alerts(event)
            assert shows(assert_valid(alert.text), value), event


# -- text primitives -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30), ("30m", 1800), (" 2H ", 7200), ("1d", 86400), ("366d", 366 * 86400)],
)
def test_parse_duration_accepts(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    "text",
    ["", " ", "0m", "1.5h", "-5m", "5", "m", "5w", "1h30m", "٣m", "367d", "9" * 5000 + "s"],
)
def test_parse_duration_refuses_with_a_short_hint(text: str) -> None:
    with pytest.raises(ValueError, match="like 30m or 2h") as caught:
        parse_duration(text)
    assert len(str(caught.value)) < 150


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (-5, "0s"),
        (59.9, "59s"),
        (60, "1m"),
        (61, "1m 1s"),
        (3600, "1h"),
        (3660, "1h 1m"),
        (86400, "1d"),
        (90000, "1d 1h"),
        (math.nan, "?"),
        (math.inf, "?"),
    ],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


def test_clip_edges() -> None:
    assert clip("abc", 3) == "abc"
    assert clip("abcd", 3) == "ab…"
    assert clip("abc", 1) == "…"
    assert clip("abc", 0) == ""
    assert clip("", 5) == ""
    assert clip("😀" * 10, 4) == "😀😀😀…"


def test_esc_clip_cuts_before_escaping() -> None:
    assert esc_clip("<<<<", 100) == "&lt;" * 4
    assert esc_clip("<" * 10, 9) == "&lt;&lt;…"
    assert esc_clip("<" * 10, 3) == "…"
    assert esc_clip("abc", 0) == ""
    for value in NASTY:
        for limit in (1, 7, 100, 4096):
            clipped = esc_clip(value, limit)
            assert len(clipped) <= limit
            assert value.startswith(html_to_text(clipped).removesuffix(ELLIPSIS))


def test_clip_lines_from_top_edges() -> None:
    assert clip_lines_from_top([], 10) == ""
    assert clip_lines_from_top(["a", "b", "c"], 4) == "b\nc"
    assert clip_lines_from_top(["a", "b", "c"], 100) == "a\nb\nc"
    assert clip_lines_from_top(["x" * 100], 10) == "…" + "x" * 9
    assert clip_lines_from_top(["x" * 100], 1) == ""
    assert clip_lines_from_top(["x" * 100], 0) == ""
    for limit in range(2, 20):
        clipped = clip_lines_from_top([esc("&" * 50)], limit)
        assert len(clipped) <= limit
        assert set(html_to_text(clipped.removeprefix(ELLIPSIS))) <= {"&"}
        assert clipped.removeprefix(ELLIPSIS).startswith(("&amp;", ""))


def test_clip_html_closes_tags_and_never_splits_a_token() -> None:
    source = "<b>bold &amp; <i>" + "&lt;x&gt;" * 2000 + "</i></b> tail"
    for limit in range(20, 200, 7):
        clipped = clip_html(source, limit)
        assert len(clipped) <= limit
        check_text(clipped, "HTML")
        shown = html_to_text(clipped).removesuffix(ELLIPSIS)
        assert html_to_text(source).startswith(shown)
    assert clip_html(source, len(source)) == source


def test_a_second_failure_of_an_incident_says_how_many_and_shows_the_latest_lines() -> None:
    composer = AlertComposer()
    now = datetime.now(UTC)

    def crash(attempt: int, line: str) -> Crashed:
        return Crashed(
            workflow="api",
            time=now,
            incident="i1",
            attempt=attempt,
            failures=attempt + 1,
            max_attempts=20,
            will_restart=True,
            next_restart_in=30,
            exit_code=1,
            log_tail=(line,),
        )

    [first] = composer.alerts(crash(0, "first <trace>"))
    [second] = composer.alerts(crash(1, "second <trace>"))
    assert first.key == second.key
    assert "crashed: exit code 1" in first.text
    assert "failed 2 times in a row; last crashed: exit code 1" in second.text
    assert "second &lt;trace&gt;" in second.text
    assert "first" not in second.text
    assert "attempt 2/20, next in 30s" in second.text


def test_status_is_one_line_per_workflow_even_with_multiline_summaries() -> None:
    statuses = [wf(f"w{i}", summary="planning\nthe work\n\nnow", restarts=i) for i in range(3)]
    [message] = overview(statuses)
    lines = message.text.splitlines()
    assert len(lines) == 1 + 3  # the header, then one line each
    assert lines[1].endswith("— planning the work now")
    assert "↻2" in lines[3]


def test_severity_follows_what_the_user_must_do() -> None:
    composer = AlertComposer()
    now = datetime.now(UTC)

    def crash(incident: str, *, will_restart: bool) -> Crashed:
        return Crashed(
            workflow="w",
            time=now,
            incident=incident,
            attempt=0,
            max_attempts=3,
            will_restart=will_restart,
            exit_code=1,
        )

    restarting, left_down = crash("a", will_restart=True), crash("b", will_restart=False)
    gave_up = GaveUp(
        workflow="w", time=now, incident="a", attempts=3, cause="crash", last_detail="x"
    )
    [warning] = composer.alerts(restarting)
    [down] = composer.alerts(left_down)
    [loud] = composer.alerts(gave_up)
    assert (warning.loud, warning.critical) == (False, False)
    assert (down.loud, down.critical) == (True, True)
    assert (loud.loud, loud.critical, loud.key) == (True, True, None)


def test_a_hang_reads_in_human_durations() -> None:
    now = datetime.now(UTC)

    def hung(age: float | None, threshold: float) -> Hung:
        return Hung(
            workflow="w",
            time=now,
            incident="i",
            attempt=0,
            max_attempts=3,
            will_restart=True,
            heartbeat_age=age,
            threshold=threshold,
        )

    [late] = AlertComposer().alerts(hung(312, 300))
    [silent] = AlertComposer().alerts(hung(None, 90))
    assert "hung: no heartbeat for 5m 12s (threshold 5m)" in late.text
    assert "hung: no heartbeat within 1m 30s" in silent.text


def test_a_long_error_keeps_its_head_and_its_last_line_and_says_how_much_was_cut() -> None:
    from bot.text import esc_clip_middle

    trace = "Traceback (most recent call last):\n" + "  frame <x> & y\n" * 2000
    text = trace + "ValueError: the <real> cause"
    for limit in (200, 1000, 3000):
        shown = esc_clip_middle(text, limit)
        assert len(shown) <= limit
        assert shown.startswith("Traceback (most recent call last):")
        assert shown.endswith("ValueError: the &lt;real&gt; cause")
        cut = int(shown.split("… ")[1].split(" characters cut")[0].replace(",", ""))
        kept = html_to_text(shown).replace(f"\n… {cut:,} characters cut …\n", "")
        assert len(kept) + cut == len(text)
    assert esc_clip_middle("short <one>", 100) == "short &lt;one&gt;"


def test_one_vocabulary_the_state_decides_icon_and_word_and_liveness_the_heartbeat() -> None:
    """Never "🛑 gamma running" or "✅ delta error": the icon and word are the state's, and
    the workflow's own status and heartbeat show only beside a live process."""
    from supervisor.events import LIVE_STATES, STATE_LABELS

    for state, (icon, word) in STATE_LABELS.items():
        for own in (None, "running", "error", "done", "idle"):
            status = wf("gamma", state=state, status=own, heartbeat_age=12.0)
            line = html_to_text(status_line(status))
            assert line.startswith(f"{icon} gamma {word}"), line
            assert ("♥" in line) == (state in LIVE_STATES), line
            assert (f"says {own}" in line) == (
                state in LIVE_STATES and own not in (None, "running")
            )
            other_icons = {i for s, (i, _) in STATE_LABELS.items() if s != state}
            assert not any(i in line for i in other_icons), line


def test_cost_of_a_thousand_workflows_is_split_dearest_first_and_totalled_last() -> None:
    statuses = [
        WorkflowStatus(
            name=f"wf-{index:04d}",
            state="running",
            spend=SpendSummary(today_usd=index / 100, week_usd=index / 10),
        )
        for index in range(1000)
    ]
    messages = cost_messages(statuses, OwnSpend(today_usd=0.5, cap_usd=5.0))
    assert len(messages) > 1
    for message in messages:
        check_text(message.text, "HTML")
        assert len(message.text) <= TELEGRAM_LIMIT
    text = "\n".join(message.text for message in messages)
    assert text.index("wf-0999") < text.index("wf-0998") < text.index("wf-0000")
    assert "of $5.00 a day" in messages[-1].text
    assert f"total today: {usd(sum(i / 100 for i in range(1000)) + 0.5)}" in messages[-1].text
