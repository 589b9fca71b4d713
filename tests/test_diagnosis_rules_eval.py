"""The rules, scored on every recorded failure: never wrong when they answer.

A case the rules answer must get the expected category (precision 100%) and
contain its phrases; a case they leave as ``unknown`` is left to the model
and only counts against accuracy, whose floor is set here from what the
rules really score (21 of 23 when this was written).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from supervisor.diagnosis.rules import classify
from supervisor.diagnosis.types import EvidenceItem, EvidencePack
from tests.evals.diagnosis.cases import (
    API_KEY,
    BOT_TOKEN,
    Case,
    build_case_pack,
    load_cases,
    verdict_text,
)

CASES = load_cases()
ACCURACY_FLOOR = 0.85
REQUIRED = {
    "keyerror_in_task",
    "import_error",
    "oom_killed",
    "deadlocked_task",
    "rate_limit_429_loop",
    "disk_full",
    "database_locked",
    "api_401",
    "bad_config_value",
    "dead_heartbeat_thread",
    "dns_failure",
    "infinite_loop",
    "changed_code_path_on_resume",
    "json_reply_failed_validation",
}


def test_the_evaluation_set_covers_the_failures_the_issue_names() -> None:
    assert len(CASES) >= 20
    assert not REQUIRED - {case.name for case in CASES}


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_the_rules_are_never_wrong_when_they_answer(case: Case, tmp_path: Path) -> None:
    verdict = classify(build_case_pack(case, tmp_path))
    text = verdict_text(verdict)
    assert verdict.source == "rules"
    for secret in (*case.must_not, BOT_TOKEN, API_KEY):
        assert secret.lower() not in text.lower()
    if verdict.category == "unknown":
        assert verdict.confidence == "low"
        return
    assert verdict.category == case.category
    for phrase in case.must:
        assert phrase.lower() in text.lower(), f"{phrase!r} missing from {text!r}"


def test_the_rules_answer_most_cases_rightly(tmp_path: Path) -> None:
    right = []
    for case in CASES:
        verdict = classify(build_case_pack(case, tmp_path / case.name))
        right.append(verdict.category == case.category)
        print(f"{case.name:32} expected {case.category:12} rules {verdict.category}")
    accuracy = sum(right) / len(right)
    print(f"rules accuracy: {sum(right)}/{len(right)} = {accuracy:.0%}")
    assert accuracy >= ACCURACY_FLOOR


def test_the_supervisors_own_locked_read_does_not_outweigh_the_workflows_exception() -> None:
    # Seen on a busy CI host: the supervisor's read of the state database found it locked
    # for a moment, then the workflow crashed with a KeyError of its own.
    pack = EvidencePack(
        workflow="flow",
        items=(
            EvidenceItem("state", "state", "status: running"),
            EvidenceItem(
                "event:1",
                "event",
                "2026-12-02T10:00:00+00:00 state_unreadable: database unreadable: "
                "database is locked",
            ),
            EvidenceItem("log:1", "log", "Traceback (most recent call last):"),
            EvidenceItem("log:2", "log", '    print("fetching with", settings["retry"])'),
            EvidenceItem("log:3", "log", "KeyError: 'retry'"),
        ),
        signature="KeyError@flow.py:13",
    )
    verdict = classify(pack)
    assert verdict.category != "resource"
    assert "database is locked" not in " ".join(quote.quote for quote in verdict.evidence)


def test_an_event_still_proves_a_failure_the_workflow_said_nothing_about() -> None:
    pack = EvidencePack(
        workflow="flow",
        items=(
            EvidenceItem(
                "event:1",
                "event",
                "2026-12-02T10:00:00+00:00 crashed: could not start: "
                "[Errno 2] No such file or directory: 'flw.py'",
            ),
        ),
        signature="exit:1",
    )
    assert classify(pack).category == "environment"
