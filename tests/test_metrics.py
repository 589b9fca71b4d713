"""``GET /metrics`` on ``METRICS_ADDR``, scraped over HTTP from a real bot with real workflows.

Each test starts the bot on ``127.0.0.1:0`` (a free port, read back from
``service.metrics.port``) and checks the scrape, parsed by prometheus_client's
own parser, against what it made the workflows do: a crash, a hang, an alert
delivered late because Telegram was down, a call in the spend ledger.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa
from prometheus_client.parser import text_string_to_metric_families
from pydantic import ValidationError

from bot.settings import BotSettings
from supervisor import dbschema
from supervisor.control import ControlDB
from supervisor.dbengine import make_engine
from supervisor.events import WorkflowStatus
from supervisor.fleet import registry
from supervisor.fleet.registry import Identity
from supervisor.fleet.tables import FLEET_SCHEMA
from supervisor.knownsettings import known_names, unknown_setting
from supervisor.observe.metrics import Metrics, Spend, WorkflowSample
from supervisor.spend import SpendLedger
from tests.bot_harness import BotRig, bot_running, is_alert, worker_table
from tests.supervisor_harness import Headless, settings, table, write_toml

ANY_PORT = "127.0.0.1:0"
DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def port_of(rig: BotRig) -> int:
    metrics = rig.bot.service.metrics
    assert metrics is not None
    assert metrics.port is not None
    return metrics.port


def _scrape(port: int) -> Samples:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain; version=")
        text = response.read().decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def scrape(rig: BotRig) -> Samples:
    """One scrape, from a thread: the bot's loop goes on meanwhile, as with Prometheus."""
    return await asyncio.to_thread(_scrape, port_of(rig))


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


async def scraped_until(
    rig: BotRig,
    condition: Callable[[Samples], bool],
    timeout: float = 20.0,  # noqa: ASYNC109
) -> Samples:
    """Scrape until ``condition`` holds (the metrics follow events within a second or so)."""
    deadline = time.monotonic() + timeout
    while True:
        samples = await scrape(rig)
        if condition(samples):
            return samples
        assert time.monotonic() < deadline, f"never held; last scrape: {samples}"
        await asyncio.sleep(0.1)


def states(samples: Samples, workflow: str, node: str) -> dict[str, float]:
    return {
        dict(labels)["state"]: number
        for (name, labels), number in samples.items()
        if name == "acp_workflow_state"
        and dict(labels)["workflow"] == workflow
        and dict(labels)["node"] == node
    }


async def test_a_crash_is_one_incident_and_its_restart_is_counted(tmp_path: Path) -> None:
    tables = [worker_table(tmp_path, restart_backoff_seconds=[2])]
    async with bot_running(tmp_path, tables, metrics_addr=ANY_PORT) as rig:
        node = rig.supervisor.settings.node
        me = {"workflow": "worker", "node": node}
        await rig.wait_state("worker", "running")
        before = await scraped_until(
            rig, lambda s: value(s, "acp_workflow_up", **me) == 1, timeout=10
        )
        assert value(before, "acp_workflow_restarts_total", **me) == 0
        assert value(before, "acp_incidents_total", **me, kind="crash") == 0
        assert value(before, "acp_incidents_total", **me, kind="hang") == 0
        running = states(before, "worker", node)
        assert running["running"] == 1
        assert sum(running.values()) == 1
        assert set(running) >= {"starting", "hung", "backoff", "crashed", "gave_up", "stopped"}
        age = value(before, "acp_workflow_heartbeat_age_seconds", **me)
        assert age is not None
        assert 0 <= age < 10

        rig.order("worker", exit=1)
        await rig.wait_state("worker", "backoff", within=10)
        rig.order("worker")  # the restarted process behaves
        await rig.alert("crashed: exit code 1")
        after = await scraped_until(
            rig,
            lambda s: (
                value(s, "acp_workflow_restarts_total", **me) == 1
                and value(s, "acp_workflow_up", **me) == 1
            ),
        )
        assert value(after, "acp_incidents_total", **me, kind="crash") == 1
        assert value(after, "acp_incidents_total", **me, kind="hang") == 0


async def test_a_hang_is_an_incident_of_kind_hang_and_the_workflow_is_down_meanwhile(
    tmp_path: Path,
) -> None:
    # The threshold is also the restarted process's grace for its first heartbeat: room for
    # a Python start on a busy machine.
    tables = [worker_table(tmp_path, hang_threshold_seconds=4, restart_backoff_seconds=[5])]
    async with bot_running(tmp_path, tables, metrics_addr=ANY_PORT) as rig:
        me = {"workflow": "worker", "node": rig.supervisor.settings.node}
        await rig.wait_state("worker", "running")
        rig.order("worker", hang=True)
        down = await scraped_until(
            rig, lambda s: value(s, "acp_incidents_total", **me, kind="hang") == 1
        )
        rig.order("worker")  # the hung process sleeps on; the restarted one will behave
        assert value(down, "acp_incidents_total", **me, kind="crash") == 0
        # Five seconds of backoff: down, and in exactly one state that says so.
        backing_off = await scraped_until(
            rig, lambda s: value(s, "acp_workflow_state", **me, state="backoff") == 1
        )
        assert value(backing_off, "acp_workflow_up", **me) == 0
        assert sum(states(backing_off, "worker", me["node"]).values()) == 1
        await scraped_until(
            rig,
            lambda s: (
                value(s, "acp_workflow_up", **me) == 1
                and value(s, "acp_workflow_restarts_total", **me) == 1
            ),
            timeout=30,
        )
        assert value(await scrape(rig), "acp_incidents_total", **me, kind="hang") == 1


async def test_an_alert_waits_in_the_outbox_while_telegram_is_down_and_its_delay_is_measured(
    tmp_path: Path,
) -> None:
    async with bot_running(tmp_path, [worker_table(tmp_path)], metrics_addr=ANY_PORT) as rig:
        await rig.wait_state("worker", "running")
        first = await scraped_until(
            rig,
            lambda s: (
                value(s, "acp_alerts_pending") == 0
                and (value(s, "acp_alert_delivery_seconds_count") or 0) >= 1
            ),  # "bot up"
        )
        delivered = value(first, "acp_alert_delivery_seconds_count")
        assert delivered is not None
        rig.fake.set_down()
        rig.order("worker", error="disk full")
        waiting = await scraped_until(rig, lambda s: (value(s, "acp_alerts_pending") or 0) >= 1)
        assert value(waiting, "acp_alert_delivery_seconds_count") == delivered
        rig.fake.set_down(False)
        await rig.fake.wait_for_sent(is_alert("disk full"), timeout=30)
        after = await scraped_until(
            rig,
            lambda s: (
                value(s, "acp_alerts_pending") == 0
                and (value(s, "acp_alert_delivery_seconds_count") or 0) > delivered
            ),
        )
        count = value(after, "acp_alert_delivery_seconds_count")
        assert value(after, "acp_alert_delivery_seconds_bucket", le="+Inf") == count
        total = value(after, "acp_alert_delivery_seconds_sum")
        assert total is not None
        assert total > 0


async def test_the_spend_ledger_is_the_agent_cost_and_tokens(tmp_path: Path) -> None:
    async with bot_running(tmp_path, [worker_table(tmp_path)], metrics_addr=ANY_PORT) as rig:
        none_yet = await scraped_until(
            rig, lambda s: value(s, "acp_agent_cost_usd_total", workflow="", who="bridge") == 0
        )
        assert value(none_yet, "acp_agent_cost_usd_total", workflow="", who="diagnosis") == 0
        engine = make_engine(rig.supervisor.settings.control_db_url)
        try:
            ledger = SpendLedger(engine, cap_usd=5)
            # What a /why records, and then a bridge turn (supervisor.spend's one ledger).
            await asyncio.to_thread(ledger.record, "claude-sonnet-4-6", 1000, 200, 0.006)
            await asyncio.to_thread(
                ledger.record, "claude-sonnet-4-6", 500, 100, 0.003, who="bridge"
            )
        finally:
            engine.dispose()
        spent = await scraped_until(
            rig,
            lambda s: value(s, "acp_agent_cost_usd_total", workflow="", who="diagnosis") == 0.006,
        )
        assert value(spent, "acp_agent_cost_usd_total", workflow="", who="bridge") == 0.003
        tokens = {"workflow": "", "who": "diagnosis"}
        assert value(spent, "acp_agent_tokens_total", **tokens, direction="input") == 1000
        assert value(spent, "acp_agent_tokens_total", **tokens, direction="output") == 200


async def test_in_a_fleet_a_node_shows_its_own_workflows_under_its_name(
    tmp_path: Path, postgres_url: str
) -> None:
    """Another node's workflows are that node's to show: only it knows their heartbeats."""
    ControlDB(postgres_url).close()
    engine = sa.create_engine(postgres_url)
    with engine.begin() as conn:
        dbschema.settle(conn, FLEET_SCHEMA)
    with engine.begin() as conn:
        registry.join(conn, Identity("node-b", "run-1", "host", 1), ["far"], timeout=60)
        registry.publish(conn, "node-b", [(0, WorkflowStatus(name="far", state="running"))])
    engine.dispose()
    conf = settings(tmp_path, db_url=postgres_url, node="node-a")
    async with bot_running(
        tmp_path, [worker_table(tmp_path)], conf=conf, metrics_addr=ANY_PORT
    ) as rig:
        await rig.wait_state("worker", "running")
        assert "far" in rig.bot.service.api.names
        shown = await scraped_until(
            rig, lambda s: value(s, "acp_workflow_up", workflow="worker", node="node-a") == 1
        )
        assert not [labels for (_, labels) in shown if ("workflow", "far") in labels]


async def test_a_port_in_use_is_one_error_line_and_the_bot_runs_without_metrics(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        addr = f"127.0.0.1:{taken.getsockname()[1]}"
        with caplog.at_level(logging.INFO):
            async with bot_running(tmp_path, [worker_table(tmp_path)], metrics_addr=addr) as rig:
                await rig.wait_state("worker", "running")
                assert "worker" in await rig.ask("/status")
                metrics = rig.bot.service.metrics
                assert metrics is not None
                assert metrics.port is None
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    [line] = [r for r in errors if r.name == "supervisor.observe"]
    assert line.getMessage().startswith(f"metrics: cannot listen on METRICS_ADDR={addr} (")
    assert "going on without /metrics" in line.getMessage()
    assert line.exc_info is None


def test_metrics_addr_is_off_by_default_and_must_be_host_and_port() -> None:
    assert BotSettings().metrics_addr is None
    assert BotSettings(metrics_addr="").metrics_addr is None
    assert BotSettings(metrics_addr="127.0.0.1:9464").metrics_addr == "127.0.0.1:9464"
    assert BotSettings(metrics_addr="[::1]:9464").metrics_addr == "[::1]:9464"
    for wrong in ("9464", "localhost", "127.0.0.1:http", "127.0.0.1:70000", "::1:9464"):
        with pytest.raises(ValidationError, match="metrics_addr"):
            BotSettings(metrics_addr=wrong)


def test_a_misspelt_metrics_setting_is_refused_by_name() -> None:
    known = known_names([BotSettings])
    assert unknown_setting({"METRICS_ADDR"}, known) is None
    assert unknown_setting({"METRICS_ADR"}, known) == (
        "unknown setting METRICS_ADR (did you mean METRICS_ADDR?)"
    )


def test_the_dashboard_and_the_alert_rules_ask_only_for_what_the_bot_serves() -> None:
    metrics = Metrics()
    metrics.show_workflows((WorkflowSample("w", "n", "running", 1.0),))
    metrics.show_pending(0)
    metrics.show_spend([Spend("diagnosis", 0.1, 10, 1)])
    metrics.known(["w"], "n")
    served = {
        sample.name
        for family in text_string_to_metric_families(metrics.render().decode())
        for sample in family.samples
    }
    dashboard = json.loads((DEPLOY / "grafana-dashboard.json").read_text())
    queries = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    rules = (DEPLOY / "prometheus-alerts.yaml").read_text()
    asked = set(re.findall(r"\bacp_[a-z_]+", " ".join([*queries, rules])))
    assert asked
    assert asked <= served, asked - served
    assert "expr: >-\n          acp_workflow_up == 0\n" in rules
    assert "        for: 2m\n" in rules
    assert "deriv(acp_alerts_pending[10m]) > 0" in rules


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_a_headless_node_serves_its_own_metrics_and_health(tmp_path: Path) -> None:
    """``python -m supervisor run`` with METRICS_ADDR: its workflows on /metrics, /readyz 200;
    no outbox there, so no ``acp_alerts_pending``."""
    port = free_port()
    conf = settings(tmp_path)
    config = write_toml(tmp_path / "supervisor.toml", [table(tmp_path, "solo", db="solo.db")])
    headless = Headless(config, conf, "--json", env={"METRICS_ADDR": f"127.0.0.1:{port}"})
    try:
        headless.wait_for("started")
        me = {"workflow": "solo", "node": socket.gethostname()}
        deadline = time.monotonic() + 30
        while True:
            try:
                scraped = _scrape(port)
                if value(scraped, "acp_workflow_up", **me) == 1:
                    break
            except OSError:
                pass  # not listening yet
            assert time.monotonic() < deadline, "the headless node never showed solo up"
            time.sleep(0.1)
        assert not [name for name, _ in scraped if name == "acp_alerts_pending"]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=10) as ready:
            assert ready.status == 200
    finally:
        headless.close()


@pytest.mark.parametrize(
    ("name", "value", "said"),
    [
        ("METRICS_ADDR", "no-port-here", "error: bad setting METRICS_ADDR"),
        ("METRICS_ADR", "127.0.0.1:0", "error: unknown setting METRICS_ADR (did you mean"),
    ],
)
def test_a_bad_metrics_addr_stops_a_headless_node_with_one_line(
    tmp_path: Path, name: str, value: str, said: str
) -> None:
    config = write_toml(tmp_path / "supervisor.toml", [table(tmp_path, "solo", db="solo.db")])
    env = {
        **os.environ,
        "SUPERVISOR_CONFIG": str(config),
        "SUPERVISOR_DATA_DIR": str(tmp_path / "data"),
        name: value,
    }
    done = subprocess.run(
        [sys.executable, "-m", "supervisor", "run"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].startswith(said)
