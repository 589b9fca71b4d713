"""The model call: the pack in the first request, read-only tools when needed, an answer always.

One conversation, all under ``AGENT_TIMEOUT_SECONDS``: count the tokens and
trim the pack to ``INPUT_TOKEN_CAP``; refuse if today's spend would pass
``AGENT_MAX_USD_PER_DAY``, or if this one diagnosis would pass its own cap
(``DIAGNOSIS_SHARE_OF_DAY`` of the daily cap); then the SDK's tool runner with the read-only
tools (``tools.py``) for at most ``STEP_CAP`` turns, parsing into
``Diagnosis``; a model still asking for tools after that gets one last call
in which it may not use them (``tool_choice: none``; the tools stay defined
because the history holds their calls). API errors are retried by the SDK
(``claudeclient.MAX_RETRIES``) within the deadline; after that, and on a
reply that does not parse, the rules' verdict stands with a note. Every
request leaves through the redacting client, and what it cost is recorded.

The cap per diagnosis is checked before every round, the first included:
what the conversation has cost so far plus the next round's counted input
tokens and ``MAX_TOKENS`` of output. A round it cannot afford is not sent;
the diagnosis ends with the answer it has, which before a final reply is
none, so the rules' verdict stands with the note ``PER_DIAGNOSIS_CAP``.
What it does not promise: a round may still cost less than its estimate
and leave room unused, and the estimate of a tool round counts the tools'
results as the count_tokens endpoint does.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from supervisor.agentsettings import AgentSettings
from supervisor.claudeclient import (
    ClientFactory,
    is_api_error,
    redacting_client,
    sdk_ready,
    unavailable_reason,
)
from supervisor.diagnosis.check import check, fallback, verdict_from
from supervisor.diagnosis.prompt import SYSTEM, trimmed, user_message
from supervisor.diagnosis.tools import Findings, Sources, read_only_tools
from supervisor.diagnosis.types import Diagnosis, EvidencePack, Usage, Verdict
from supervisor.secrets import Redactor
from supervisor.spend import Budget, CapReached, SpendLedger, Tally
from supervisor.toolloop import parsed_answer
from workflows.prices import cost_usd, price_of

if TYPE_CHECKING:
    import anthropic

STEP_CAP = 4
INPUT_TOKEN_CAP = 40_000
MAX_TOKENS = 2_048
TRIM_ATTEMPTS = 3
UNAVAILABLE = "Claude unavailable"
# One diagnosis may spend at most this share of AGENT_MAX_USD_PER_DAY, so a single runaway
# conversation (a long tool loop over a huge log) cannot eat the whole day's budget.
DIAGNOSIS_SHARE_OF_DAY = 0.25
PER_DIAGNOSIS_CAP = "cost cap per diagnosis reached"


async def ask_model(
    pack: EvidencePack,
    rules_verdict: Verdict,
    *,
    settings: AgentSettings,
    ledger: SpendLedger,
    redactor: Redactor,
    sources: Sources | None = None,
    client_factory: ClientFactory = redacting_client,
    clock: Callable[[], float] = time.monotonic,
) -> Verdict:
    """Claude's checked verdict on ``pack``, or the rules' with a note saying why not."""
    started, tally = clock(), Tally()
    model = settings.anthropic_model
    price = price_of(model, settings.agent_prices)
    cap = settings.agent_max_usd_per_day * DIAGNOSIS_SHARE_OF_DAY
    budget = Budget(price, cap, MAX_TOKENS, tally)

    def usage() -> Usage:
        spent = cost_usd(price, tally.input_tokens, tally.output_tokens)
        seconds = clock() - started
        return Usage(model, tally.input_tokens, tally.output_tokens, spent, seconds)

    pack = _redacted(pack, redactor)
    findings = Findings(redactor.redact)
    tools = read_only_tools(sources or Sources(), findings)
    await sdk_ready()
    try:
        async with (
            client_factory(settings, redactor.redact) as client,
            asyncio.timeout(settings.agent_timeout_seconds),
        ):
            sent, tokens = await _fit(client, pack, rules_verdict, tools, model)
            if sent is None:
                note = f"the evidence is too large for Claude ({tokens} tokens); the rules' verdict"
                return fallback(rules_verdict, note)
            estimate = cost_usd(price, tokens, MAX_TOKENS)
            if not await asyncio.to_thread(ledger.allowed, estimate):
                cap = settings.agent_max_usd_per_day
                note = f"Claude not asked: today's spend is at the cap (${cap:.2f} a day)"
                return fallback(rules_verdict, f"{note}; the rules' verdict")
            diagnosis = await _converse(
                client,
                pack=sent,
                rules=rules_verdict,
                tools=tools,
                model=model,
                budget=budget,
                counted=tokens,
            )
    except CapReached:
        note = f"{PER_DIAGNOSIS_CAP} (${cap:.2f}, a share of the daily cap); the rules' verdict"
        return fallback(rules_verdict, note, usage())
    except ValidationError:
        return _unavailable(rules_verdict, "its answer did not parse", usage())
    except Exception as exc:
        if not (isinstance(exc, TimeoutError) or is_api_error(exc)):
            raise
        return _unavailable(rules_verdict, unavailable_reason(exc), usage())
    finally:
        if tally.input_tokens or tally.output_tokens:
            spent = usage()
            await asyncio.to_thread(
                ledger.record, model, spent.input_tokens, spent.output_tokens, spent.cost_usd
            )
    if diagnosis is None:
        return _unavailable(rules_verdict, "no answer", usage())
    seen = dataclasses.replace(sent, items=(*sent.items, *findings.items))
    checked, dropped = check(diagnosis, seen)
    return verdict_from(checked, dropped, rules_verdict, usage())


async def _fit(
    client: anthropic.AsyncAnthropic,
    pack: EvidencePack,
    rules_verdict: Verdict,
    tools: Sequence[Any],
    model: str,
) -> tuple[EvidencePack | None, int]:
    """The pack trimmed to the input cap (None if it cannot be), and its token count."""
    keep, sent = 1.0, pack
    for _ in range(TRIM_ATTEMPTS):
        counted = await client.beta.messages.count_tokens(
            model=model,
            system=SYSTEM,
            messages=[{"role": "user", "content": user_message(sent, rules_verdict)}],
            tools=[tool.to_dict() for tool in tools],
        )
        if counted.input_tokens <= INPUT_TOKEN_CAP:
            return sent, counted.input_tokens
        keep *= 0.9 * INPUT_TOKEN_CAP / counted.input_tokens
        sent = trimmed(pack, keep)
    return None, counted.input_tokens


async def _converse(
    client: anthropic.AsyncAnthropic,
    *,
    pack: EvidencePack,
    rules: Verdict,
    tools: Sequence[Any],
    model: str,
    budget: Budget,
    counted: int,
) -> Diagnosis | None:
    """The tool runner for up to ``STEP_CAP`` turns, then one last call without tool use,
    every round checked against ``budget`` (``supervisor.toolloop``)."""
    request: dict[str, Any] = {
        "model": model,
        "max_tokens": MAX_TOKENS,
        "system": SYSTEM,
        "output_format": Diagnosis,
    }
    answer: Diagnosis | None = await parsed_answer(
        client,
        request,
        user_message(pack, rules),
        tools,
        budget=budget,
        max_rounds=STEP_CAP,
        last_words="No more tools: answer now from what you have.",
        first_input=counted,
    )
    return answer


def _unavailable(rules_verdict: Verdict, reason: str, usage: Usage) -> Verdict:
    return fallback(rules_verdict, f"{UNAVAILABLE} ({reason}); the rules' verdict", usage)


def _redacted(pack: EvidencePack, redactor: Redactor) -> EvidencePack:
    """The pack as the model will see it, so that the check compares like with like."""
    items = tuple(dataclasses.replace(i, text=redactor.redact(i.text)) for i in pack.items)
    return dataclasses.replace(pack, items=items)
