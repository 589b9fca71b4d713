"""Heal's pieces without the bot: refusals, the agent's path check, budgets, policies."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from supervisor.agentsettings import AgentSettings
from supervisor.claudeclient import redacting_client
from supervisor.dbengine import make_engine
from supervisor.diagnosis.types import Verdict
from supervisor.events import EventRecord
from supervisor.heal.agent import write_fix
from supervisor.heal.desk import failed_after
from supervisor.heal.healer import Healer, HealRefused, allowed_by, policy_of
from supervisor.heal.store import ProposalStore
from supervisor.secrets import Redactor
from supervisor.spend import Budget
from tests.fakes.messages_api import FakeMessagesAPI, tool_results
from tests.supervisor_harness import resolve, settings
from workflows.prices import price_of

API_KEY = "sk-ant-api03-heal-unit-key-not-real-0123456789"


def verdict(category: str) -> Verdict:
    return Verdict(
        workflow="flow",
        cause="something",
        category=category,  # type: ignore[arg-type]
        confidence="high",
        evidence=(),
        next_steps=(),
        restart_helps=False,
        source="rules",
    )


@pytest.mark.parametrize("category", ["killed", "transient", "credentials", "resource", "none"])
async def test_a_failure_a_code_change_cannot_fix_is_refused(tmp_path: Path, category: str) -> None:
    conf = settings(tmp_path)
    [flow] = resolve(tmp_path, conf, {"name": "flow", "command": ["true"]})
    healer = Healer(
        make_engine(conf.control_db_url),
        AgentSettings(anthropic_api_key=API_KEY),
        conf.data_dir,
        redactor=Redactor(),
    )
    with pytest.raises(HealRefused, match="not a bug a code change fixes"):
        await healer.propose(flow, verdict(category), "sig")


async def test_the_agent_cannot_edit_outside_heal_paths(tmp_path: Path) -> None:
    (tmp_path / "flow.py").write_text("x = 1\n", encoding="utf-8")
    (tmp_path / "other.py").write_text("y = 1\n", encoding="utf-8")
    with FakeMessagesAPI() as claude:
        claude.queue_tool_use(
            "edit", {"file_path": "other.py", "old_string": "y = 1", "new_string": "y = 2"}
        )
        claude.queue_reply(json.dumps({"summary": "s", "rationale": []}))
        agent = AgentSettings(anthropic_api_key=API_KEY, anthropic_base_url=claude.base_url)
        budget = Budget(price_of(agent.anthropic_model, {}), 1.0, 4096)
        report = await write_fix(
            tmp_path,
            "fix it",
            paths=("flow.py",),
            allowed=allowed_by(("flow.py",)),
            settings=agent,
            redact=Redactor().redact,
            budget=budget,
            client_factory=redacting_client,
        )
        assert report is not None
        assert (tmp_path / "other.py").read_text(encoding="utf-8") == "y = 1\n"
        [result] = tool_results(claude.message_requests()[-1])
        assert result.get("is_error") is True
        assert "not a file heal may change" in json.dumps(result)


def test_the_budgets_count_the_stored_proposals(tmp_path: Path) -> None:
    now = [1_000_000.0]
    store = ProposalStore(make_engine(f"sqlite:///{tmp_path / 'c.db'}"), clock=lambda: now[0])

    def add(signature: str, status: str) -> None:
        store.add(
            workflow="flow",
            signature=signature,
            status=status,
            base="b",
            branch="heal/flow/x",
            worktree="/w",
            diff="",
            files=1,
            added=1,
            removed=1,
            gates=(),
            rationale=("r",),
            cause="c",
            cost_usd=0.0,
        )

    assert store.over_budget("flow", "a") is None
    add("a", "pending")
    assert "already waiting" in (store.over_budget("flow", "b") or "")
    now[0] += 25 * 3600  # the pending one expired; a new day
    add("a", "rejected")
    assert "2 proposals" in (store.over_budget("flow", "a") or "")
    add("b", "rejected")
    add("c", "failed")
    assert "3 proposals" in (store.over_budget("flow", "d") or "")


def test_heal_paths_default_to_the_script_and_are_made_repo_relative(tmp_path: Path) -> None:
    repo = tmp_path
    (repo / "flows").mkdir()
    (repo / "flows" / "job.py").write_text("", encoding="utf-8")
    conf = settings(tmp_path)
    [by_default, given] = resolve(
        tmp_path,
        conf,
        {"name": "a", "script": str(repo / "flows" / "job.py"), "cwd": str(repo / "flows")},
        {"name": "b", "command": ["true"], "cwd": str(repo / "flows"), "heal_paths": ["*.py"]},
    )
    assert policy_of(by_default, repo).paths == ("flows/job.py",)
    assert policy_of(given, repo).paths == ("flows/*.py",)


def test_failed_after_is_the_time_from_the_last_start_to_its_failure() -> None:
    t0 = datetime(2026, 12, 1, tzinfo=UTC)
    events = [
        EventRecord(t0 + timedelta(seconds=9), "flow", "crashed", "exit code 1"),
        EventRecord(t0 + timedelta(seconds=2), "flow", "started", "pid 1"),
        EventRecord(t0, "flow", "crashed", "exit code 1"),
    ]
    assert failed_after(events) == 7.0
    assert failed_after([]) is None


def test_a_proposal_older_than_a_day_expires_instead_of_applying(tmp_path: Path) -> None:
    now = [1_000_000.0]
    conf = settings(tmp_path)
    [flow] = resolve(tmp_path, conf, {"name": "flow", "command": ["true"]})
    healer = Healer(
        make_engine(conf.control_db_url),
        AgentSettings(anthropic_api_key=API_KEY),
        conf.data_dir,
        redactor=Redactor(),
        clock=lambda: now[0],
    )
    stored = healer.store.add(
        workflow="flow",
        signature="sig",
        status="pending",
        base="b",
        branch="heal/flow/x",
        worktree=str(tmp_path / "wt"),
        diff="",
        files=1,
        added=1,
        removed=0,
        gates=(),
        rationale=("r",),
        cause="c",
        cost_usd=0.0,
    )
    now[0] += 25 * 3600
    with pytest.raises(HealRefused, match="expired"):
        healer.apply(stored.id, "someone", flow)
    assert healer.store.get(stored.id).status == "expired"  # type: ignore[union-attr]
