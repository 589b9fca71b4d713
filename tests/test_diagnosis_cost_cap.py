"""A diagnosis has its own cost cap, a share of ``AGENT_MAX_USD_PER_DAY``, checked each round.

The real SDK against the stand-in Messages endpoint: a round the cap cannot
afford is never sent, and the rules' verdict comes back saying why.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from supervisor.diagnosis.model import DIAGNOSIS_SHARE_OF_DAY, MAX_TOKENS, PER_DIAGNOSIS_CAP
from supervisor.diagnosis.tools import Sources
from tests.diagnosis_rig import GOOD_ANSWER, diagnoser, pack, rules_verdict
from tests.fakes.messages_api import FakeMessagesAPI
from workflows.prices import BUILT_IN_PRICES, cost_usd

pytestmark = pytest.mark.timeout(30)
PRICE = BUILT_IN_PRICES["claude-sonnet-4"]  # the default model's price
ONE_ROUND_OUTPUT_USD = cost_usd(PRICE, 0, MAX_TOKENS)  # the output any round may cost


@pytest.fixture
def api() -> Iterator[FakeMessagesAPI]:
    with FakeMessagesAPI() as server:
        yield server


def per_day_for(cap_per_diagnosis: float) -> float:
    return cap_per_diagnosis / DIAGNOSIS_SHARE_OF_DAY


async def test_a_first_round_over_the_cap_is_not_sent_and_the_rules_answer(
    api: FakeMessagesAPI, tmp_path: Path
) -> None:
    # The day allows the round; the diagnosis's share of the day does not.
    day = per_day_for(ONE_ROUND_OUTPUT_USD * 0.9)
    verdict = await diagnoser(api, tmp_path, agent_max_usd_per_day=day).diagnose(
        pack(), rules_verdict()
    )
    assert api.message_requests() == []
    assert verdict.source == "rules"
    assert verdict.note is not None
    assert PER_DIAGNOSIS_CAP in verdict.note
    assert verdict.usage.cost_usd == 0


async def test_a_tool_round_past_the_cap_is_not_sent_and_what_was_spent_is_shown(
    api: FakeMessagesAPI, tmp_path: Path
) -> None:
    # Room for the first round, not for a second one after a dear first.
    day = per_day_for(ONE_ROUND_OUTPUT_USD * 1.6)
    tool_use = {"type": "tool_use", "id": "toolu_1", "name": "recent_events", "input": {}}
    api.queue_message([tool_use], "tool_use", input_tokens=10_000, output_tokens=100)
    api.queue_reply(GOOD_ANSWER)  # would be the answer, were the second round sent
    why = diagnoser(api, tmp_path, agent_max_usd_per_day=day)
    sources = Sources(events=("started", "exited 1"))
    verdict = await why.diagnose(pack(), rules_verdict(), sources=sources)
    assert len(api.message_requests()) == 1
    assert api.pending == 1
    assert verdict.source == "rules"
    assert verdict.note is not None
    assert PER_DIAGNOSIS_CAP in verdict.note
    assert (verdict.usage.input_tokens, verdict.usage.output_tokens) == (10_000, 100)
    assert why.ledger.spent_today() == pytest.approx(cost_usd(PRICE, 10_000, 100))


async def test_under_the_cap_the_model_answers(api: FakeMessagesAPI, tmp_path: Path) -> None:
    day = per_day_for(ONE_ROUND_OUTPUT_USD * 1.6)
    api.queue_reply(GOOD_ANSWER)
    verdict = await diagnoser(api, tmp_path, agent_max_usd_per_day=day).diagnose(
        pack(), rules_verdict()
    )
    assert verdict.source == "model"
