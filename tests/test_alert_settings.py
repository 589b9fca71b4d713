"""ALERT_TIMEZONE, ALERT_DIGEST_AT, ALERT_RENOTIFY_HOURS: real settings; a bad one is one line."""

from __future__ import annotations

from datetime import time
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from bot.__main__ import EXIT_CONFIG, main
from bot.settings import BotSettings, default_alerting
from supervisor.knownsettings import RESERVED, known_names


def test_defaults_are_utc_nine_oclock_and_four_hours() -> None:
    alerting = default_alerting()
    assert (alerting.timezone, alerting.digest_at, alerting.renotify_seconds) == (
        ZoneInfo("UTC"),
        time(9, 0),
        4 * 3600,
    )


def test_the_names_are_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALERT_TIMEZONE", "Europe/Berlin")
    monkeypatch.setenv("ALERT_DIGEST_AT", "07:30")
    monkeypatch.setenv("ALERT_RENOTIFY_HOURS", "0.5")
    alerting = BotSettings(_env_file=None).alerting
    assert (alerting.timezone, alerting.digest_at, alerting.renotify_seconds) == (
        ZoneInfo("Europe/Berlin"),
        time(7, 30),
        1800,
    )
    names = {"ALERT_TIMEZONE", "ALERT_DIGEST_AT", "ALERT_RENOTIFY_HOURS"}
    assert names <= known_names([BotSettings])
    assert not names & RESERVED


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("ALERT_TIMEZONE", "Mars/Olympus"),
        ("ALERT_DIGEST_AT", "9am"),
        ("ALERT_RENOTIFY_HOURS", "-1"),
    ],
)
def test_a_bad_value_is_refused_at_start_in_one_line_naming_it(
    name: str,
    value: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)  # no .env
    monkeypatch.setenv(name, value)
    assert main(["--console"]) == EXIT_CONFIG
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith(f"error: bad setting {name}: ")
