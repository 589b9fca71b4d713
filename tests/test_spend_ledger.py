"""One rule for spend: a call's cost from its usage, and a daily cap that survives a restart."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from supervisor.agentsettings import AgentSettings
from supervisor.dbengine import make_engine
from supervisor.knownsettings import RESERVED, known_names
from supervisor.spend import SpendLedger
from workflows.prices import UNKNOWN_MODEL_PRICE, Price, cost_usd, price_of

DAY = 1_780_000_000.0  # some instant; the ledger's day is its date (in UTC by default)


def test_cost_is_usage_times_price_per_million_tokens() -> None:
    assert cost_usd(Price(input=3, output=15), 1_000_000, 100_000) == pytest.approx(4.5)


def test_a_model_id_takes_its_longest_listed_prefix_and_settings_override() -> None:
    assert price_of("claude-sonnet-4-6", {}) == Price(input=3, output=15)
    assert price_of("claude-opus-4-1-20250805", {}) == Price(input=15, output=75)
    assert price_of("claude-opus-4-5", {}) == Price(input=5, output=25)
    ours = {"claude-sonnet-4-6": Price(input=1, output=2)}
    assert price_of("claude-sonnet-4-6", ours) == Price(input=1, output=2)


def test_an_unknown_model_is_priced_high_and_said_so(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="supervisor"):
        assert price_of("someone-elses-model", {}) == UNKNOWN_MODEL_PRICE
    assert "someone-elses-model" in caplog.text


def test_the_daily_cap_holds_across_a_restart_and_resets_the_next_day(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'control.db'}"
    now = [DAY]
    ledger = SpendLedger(make_engine(url), cap_usd=1.0, clock=lambda: now[0])
    ledger.record("claude-sonnet-4-6", 100_000, 20_000, 0.6)
    assert ledger.allowed(0.4)
    restarted = SpendLedger(make_engine(url), cap_usd=1.0, clock=lambda: now[0])
    restarted.record("claude-sonnet-4-6", 50_000, 10_000, 0.3, who="bridge")
    assert restarted.spent_today() == pytest.approx(0.9)
    assert not restarted.allowed(0.2)
    now[0] += 86_400
    assert restarted.spent_today() == 0.0
    assert restarted.allowed(0.2)


def test_the_agent_settings_are_real_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENT_TIMEOUT_SECONDS", "30")
    monkeypatch.setenv("AGENT_MAX_USD_PER_DAY", "2.5")
    monkeypatch.setenv("AGENT_PRICES", '{"my-model": {"input": 1, "output": 4}}')
    monkeypatch.setenv("ANTHROPIC_MODEL", "my-model")
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    agent = AgentSettings(_env_file=None)
    assert (agent.agent_timeout_seconds, agent.agent_max_usd_per_day) == (30, 2.5)
    assert price_of(agent.anthropic_model, agent.agent_prices) == Price(input=1, output=4)
    assert not agent.configured
    names = {"AGENT_TIMEOUT_SECONDS", "AGENT_MAX_USD_PER_DAY", "AGENT_PRICES", "ANTHROPIC_MODEL"}
    assert names <= known_names([])
    assert not names & RESERVED


def test_the_caps_day_begins_at_midnight_in_the_alert_time_zone(tmp_path: Path) -> None:
    """The bot's own agents' day is the workflows' budget day: local, from midnight."""
    berlin_23h = datetime(2026, 12, 3, 22, 30, tzinfo=UTC).timestamp()  # 23:30 in Berlin
    now = [berlin_23h]
    ledger = SpendLedger(
        make_engine(f"sqlite:///{tmp_path / 'c.db'}"),
        cap_usd=1.0,
        clock=lambda: now[0],
        zone=ZoneInfo("Europe/Berlin"),
    )
    ledger.record("claude-sonnet-4-6", 0, 0, 0.75)
    assert ledger.spent_today() == 0.75
    now[0] += 3600  # 00:30 in Berlin, still 3 December in UTC
    assert ledger.spent_today() == 0.0
    assert AgentSettings(_env_file=None, alert_timezone="Asia/Tokyo").zone == ZoneInfo("Asia/Tokyo")
    with pytest.raises(ValueError, match="unknown time zone"):
        AgentSettings(_env_file=None, alert_timezone="Mars/Olympus")
