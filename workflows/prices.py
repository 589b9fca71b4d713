"""What a call to Claude costs: the one price table of the workflows and the supervisor.

A workflow process prices its agents' usage itself (it writes ``agent.cost_usd``)
and the supervisor prices its own calls; both read this table, so one
``AGENT_PRICES`` override holds for both. Prompt caching is priced with
Anthropic's published multipliers of the input price: a cache write costs
1.25 times an input token (the 5-minute cache), a cache read 0.1 times.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Mapping

from pydantic import BaseModel, Field, TypeAdapter, ValidationError

log = logging.getLogger(__name__)

PRICES_ENV = "AGENT_PRICES"
PER_TOKEN = 1e-6  # prices are per million tokens
CACHE_WRITE_MULTIPLIER = 1.25
CACHE_READ_MULTIPLIER = 0.1


class Price(BaseModel):
    """USD per million tokens, as the price list states them."""

    input: float = Field(ge=0)
    output: float = Field(ge=0)


# Public list prices, USD per million tokens; a model id matches its longest listed prefix.
BUILT_IN_PRICES: Mapping[str, Price] = {
    "claude-opus-4-6": Price(input=5, output=25),
    "claude-opus-4-5": Price(input=5, output=25),
    "claude-opus-4-1": Price(input=15, output=75),
    "claude-opus-4": Price(input=15, output=75),
    "claude-sonnet-4-6": Price(input=3, output=15),
    "claude-sonnet-4-5": Price(input=3, output=15),
    "claude-sonnet-4": Price(input=3, output=15),
    "claude-3-7-sonnet": Price(input=3, output=15),
    "claude-haiku-4-5": Price(input=1, output=5),
    "claude-3-5-haiku": Price(input=0.8, output=4),
}
# For a model no list knows: the dearest price, so a budget errs on the safe side.
UNKNOWN_MODEL_PRICE = Price(input=15, output=75)

_PRICE_TABLE: TypeAdapter[dict[str, Price]] = TypeAdapter(dict[str, Price])


def price_of(model: str, prices: Mapping[str, Price]) -> Price:
    """The price of ``model``: its longest matching prefix in ``prices``, then in the built-ins."""
    for table in (prices, BUILT_IN_PRICES):
        matches = [name for name in table if model.startswith(name)]
        if matches:
            return table[max(matches, key=len)]
    log.warning("no price known for model %s; counting it at %s", model, UNKNOWN_MODEL_PRICE)
    return UNKNOWN_MODEL_PRICE


def cost_usd(
    price: Price,
    input_tokens: int,
    output_tokens: int,
    *,
    cache_write_tokens: int = 0,
    cache_read_tokens: int = 0,
) -> float:
    """What a call with this usage cost at ``price``; ``input_tokens`` excludes the cached ones."""
    input_usd = price.input * (
        input_tokens
        + cache_write_tokens * CACHE_WRITE_MULTIPLIER
        + cache_read_tokens * CACHE_READ_MULTIPLIER
    )
    return (input_usd + output_tokens * price.output) * PER_TOKEN


def prices_from_env() -> Mapping[str, Price]:
    """The ``AGENT_PRICES`` override (model id or prefix -> price), empty when unset or invalid.

    JSON like ``{"claude-sonnet-4": {"input": 3, "output": 15}}``. Read on
    every call so a process sees the environment it has; an invalid value is
    warned about once and the built-in prices apply, since a typo in a price
    must not stop a workflow.
    """
    return _parse(os.environ.get(PRICES_ENV, ""))


@functools.lru_cache(maxsize=8)
def _parse(raw: str) -> Mapping[str, Price]:
    if not raw.strip():
        return {}
    try:
        return _PRICE_TABLE.validate_json(raw)
    except ValidationError as exc:
        problems = "; ".join(error["msg"] for error in exc.errors())
        log.warning("%s is not valid (%s); using the built-in prices", PRICES_ENV, problems)
        return {}
