"""How a /why answer reads: within ~900 characters, valid HTML, the next step as buttons."""

from __future__ import annotations

from bot.transport import html_to_text
from bot.why import ANSWER_LIMIT, evidence_document, verdict_message
from supervisor.diagnosis.types import EvidenceItem, EvidencePack, Quote, Usage, Verdict
from tests.fakes.botapi import check_text
from tests.test_message_rendering import NASTY


def verdict(value: str, **fields: object) -> Verdict:
    values: dict[str, object] = {
        "workflow": "api",
        "cause": value * 3,
        "category": "transient",
        "confidence": "medium",
        "evidence": tuple(Quote(evidence_id=f"log:{n}", quote=value) for n in range(6)),
        "next_steps": (value, value, value),
        "restart_helps": True,
        "source": "model",
        "note": value,
        "usage": Usage("claude-x", 12_345, 678, 0.0421, 6.25),
    } | fields
    return Verdict(**values)  # type: ignore[arg-type]


def test_every_answer_is_valid_html_within_its_limit() -> None:
    for value in NASTY:
        message = verdict_message(verdict(value))
        check_text(message.text, "HTML")
        assert len(message.text) <= ANSWER_LIMIT


def test_the_answer_names_cause_confidence_evidence_next_step_and_cost() -> None:
    message = verdict_message(
        verdict("x", cause="Rate limited by the API <429>", next_steps=("Restart it",))
    )
    text = html_to_text(message.text)
    assert "transient (medium confidence)" in text
    assert "Rate limited by the API <429>" in text
    assert "log:0: x" in text
    assert "next: Restart it" in text
    assert "claude-x · 12,345 in / 678 out tokens · $0.042 · 6.2s" in text
    assert [b.data for b in message.buttons] == [
        "restart:api",
        "tail:api",
        "logs:api",
        "evidence:api",
    ]


def test_a_rules_answer_says_no_model_and_offers_no_restart_when_it_would_not_help() -> None:
    message = verdict_message(
        verdict("x", source="rules", restart_helps=False, usage=Usage(seconds=0.01))
    )
    assert "rules, no model" in message.text
    assert "restart:api" not in [b.data for b in message.buttons]


def test_the_evidence_file_holds_every_item() -> None:
    pack = EvidencePack(
        "api",
        (EvidenceItem("log:1", "log", "boom"), EvidenceItem("state", "state", "status=error")),
        signature="exit:3",
    )
    name, data = evidence_document(pack)
    assert name == "api-evidence.txt"
    assert b"=== log:1 (log) ===\nboom" in data
    assert b"status=error" in data
