"""Checked by code: a quote survives only if it is in the item it cites (pure, no model)."""

from __future__ import annotations

import pytest

from supervisor.diagnosis.check import INCONCLUSIVE, check, verdict_from
from supervisor.diagnosis.types import Diagnosis, Quote, Usage
from tests.diagnosis_rig import pack, rules_verdict


def diagnosis(*quotes: Quote) -> Diagnosis:
    return Diagnosis(
        cause="Rows lack a customer_id column",
        category="bug",
        confidence="high",
        evidence=list(quotes),
        next_steps=["Check the input"],
        restart_helps=False,
    )


@pytest.mark.parametrize(
    ("quote", "kept"),
    [
        (Quote(evidence_id="log:40", quote="KeyError: 'customer_id'"), True),
        # whitespace differs: still the same text
        (Quote(evidence_id="log:40", quote="in load\n    customer =   row['customer_id']"), True),
        # in the pack, but not in the item cited
        (Quote(evidence_id="state", quote="KeyError: 'customer_id'"), False),
        (Quote(evidence_id="log:99", quote="KeyError"), False),  # no such item
        (Quote(evidence_id="log:40", quote="MemoryError"), False),  # invented
        (Quote(evidence_id="log:40", quote="   "), False),  # empty quotes nothing
    ],
)
def test_a_quote_is_kept_only_when_its_item_holds_it(quote: Quote, kept: bool) -> None:
    checked, dropped = check(diagnosis(quote), pack())
    assert (checked.evidence == [quote], dropped) == (kept, 0 if kept else 1)


def test_with_some_evidence_left_the_model_answers_and_says_what_was_dropped() -> None:
    real = Quote(evidence_id="log:40", quote="KeyError: 'customer_id'")
    fake = Quote(evidence_id="log:40", quote="disk full")
    checked, dropped = check(diagnosis(real, fake), pack())
    verdict = verdict_from(checked, dropped, rules_verdict(), Usage(model="m"))
    assert (verdict.source, verdict.evidence) == ("model", (real,))
    assert verdict.note == "1 quote(s) not found in the evidence were dropped"


def test_with_no_evidence_left_the_rules_verdict_stands_and_the_cause_is_unconfirmed() -> None:
    checked, dropped = check(diagnosis(Quote(evidence_id="x", quote="y")), pack())
    verdict = verdict_from(checked, dropped, rules_verdict(), Usage(model="m"))
    assert verdict.source == "rules"
    assert verdict.cause == rules_verdict().cause
    assert verdict.note is not None
    assert verdict.note.startswith(INCONCLUSIVE)
    assert "unconfirmed (Rows lack a customer_id column)" in verdict.note
    assert verdict.usage == Usage(model="m")
