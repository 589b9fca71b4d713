"""What the chat is told about nodes: down is loud, back is quiet, a missed outage still loud."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bot.fleet import node_alert, takeover_alert
from supervisor.fleet.registry import NodeChange

NOW = datetime(2026, 12, 3, 10, 0, tzinfo=UTC)
SINCE = NOW - timedelta(minutes=4)


def test_down_is_loud_and_names_the_unsupervised_workflows() -> None:
    alert = node_alert(NodeChange("node-b", True, SINCE, 12), UTC, NOW.timestamp())
    assert alert.text.startswith("🔴 node <b>node-b</b> is down: 12 workflows unsupervised since")
    assert (alert.loud, alert.critical) == (True, True)


def test_back_is_quiet_and_says_how_long() -> None:
    alert = node_alert(NodeChange("node-b", False, SINCE, 1), UTC, NOW.timestamp())
    assert alert.text.startswith("🟢 node <b>node-b</b> is back after 4m")
    assert alert.text.endswith("; its 1 workflow is supervised again")
    assert not alert.loud


def test_an_outage_nobody_announced_is_loud_when_the_node_returns() -> None:
    alert = node_alert(NodeChange("node-b", False, SINCE, 3, said=False), UTC, NOW.timestamp())
    assert alert.text.startswith("🔴 node <b>node-b</b> was down for 4m: 3 workflows unsupervised")
    assert alert.text.endswith("it is back now")
    assert alert.loud


def test_a_takeover_is_said_quietly() -> None:
    alert = takeover_alert("node-c", "node-a")
    assert "node <b>node-c</b> now serves this chat (node node-a stopped" in alert.text
    assert not alert.loud
