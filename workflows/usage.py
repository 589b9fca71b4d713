"""What a run's agents used, kept in the state table as they go.

The run owns a ``UsageMeter``; every agent response adds to it, and the
meter writes the run's totals (``agent.input_tokens``, ``agent.output_tokens``,
``agent.cost_usd``) in one transaction right away, so the supervisor sees a
long conversation's cost while it runs and can hold the workflow to its
budget. A fresh run starts at 0; a resumed one reads its totals back and goes
on from them, so a crash does not make money already spent vanish. Input
tokens count cache writes and reads too; the cost prices each kind on its own
(``workflows.prices``). An agent used outside any run records nothing. The
keys are the contract's (``workflows.contract``): a workflow in any language
may write them the same way.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, replace
from typing import Any

from workflows.contract import COST_KEY, INPUT_TOKENS_KEY, OUTPUT_TOKENS_KEY, USAGE_KEYS
from workflows.prices import Price, cost_usd, price_of, prices_from_env
from workflows.state import StateWriter

log = logging.getLogger(__name__)
_TOKENS_ONLY = Price(input=0, output=0)  # for counting where the cost comes from elsewhere


@dataclass(frozen=True, slots=True)
class Usage:
    """Tokens and USD: of one response, or summed over a run."""

    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.input_tokens + other.input_tokens,
            self.output_tokens + other.output_tokens,
            self.cost_usd + other.cost_usd,
        )


def priced(
    price: Price, input_tokens: int, output_tokens: int, cache_write: int = 0, cache_read: int = 0
) -> Usage:
    """The usage of one call as the API counts it (input without the cached tokens), priced."""
    cost = cost_usd(
        price,
        input_tokens,
        output_tokens,
        cache_write_tokens=cache_write,
        cache_read_tokens=cache_read,
    )
    return Usage(input_tokens + cache_write + cache_read, output_tokens, cost)


def message_usage(message: Any, model: str | None = None) -> Usage:
    """A Messages API response's ``usage``, priced as ``model`` (else the model it names)."""
    usage = message.usage
    return priced(
        price_of(model or message.model, prices_from_env()),
        usage.input_tokens,
        usage.output_tokens,
        getattr(usage, "cache_creation_input_tokens", None) or 0,
        getattr(usage, "cache_read_input_tokens", None) or 0,
    )


def envelope_usage(
    envelope: Mapping[str, Any], model: str, prices: Mapping[str, Price] | None = None
) -> Usage:
    """What one ``claude -p --output-format json`` run used, by the JSON it printed.

    Each model of ``modelUsage`` is priced by our table (Claude Code calls a
    small model on the side, and ``AGENT_PRICES`` must apply); without it the
    CLI's own ``total_cost_usd`` is taken, and without that ``usage`` is
    priced as ``model``. ``prices``: the overrides (by default ``AGENT_PRICES``).
    """
    prices = prices_from_env() if prices is None else prices
    per_model: Mapping[str, Mapping[str, Any]] = envelope.get("modelUsage") or {}
    if per_model:
        return sum(
            (
                priced(
                    price_of(name, prices),
                    counts.get("inputTokens") or 0,
                    counts.get("outputTokens") or 0,
                    counts.get("cacheCreationInputTokens") or 0,
                    counts.get("cacheReadInputTokens") or 0,
                )
                for name, counts in per_model.items()
            ),
            Usage(),
        )
    usage: Mapping[str, Any] = envelope.get("usage") or {}
    counts = (
        usage.get("input_tokens") or 0,
        usage.get("output_tokens") or 0,
        usage.get("cache_creation_input_tokens") or 0,
        usage.get("cache_read_input_tokens") or 0,
    )
    reported = envelope.get("total_cost_usd")
    if reported is None:
        return priced(price_of(model, prices), *counts)
    return replace(priced(_TOKENS_ONLY, *counts), cost_usd=float(reported))


class UsageMeter:
    """A run's cumulative usage, written through the run's ``StateWriter`` on every change.

    Thread-safe: tasks may call agents from threads. A write that fails is
    logged and counted by the writer, never raised into the agent call.
    """

    def __init__(self, state: StateWriter, start: Usage | None = None) -> None:
        self._state = state
        self._lock = threading.Lock()
        self._total = start or Usage()
        self._write()

    @classmethod
    def for_run(cls, state: StateWriter, *, resumed: bool) -> UsageMeter:
        """A fresh run's meter starts at 0; a resumed run's at what the table holds."""
        return cls(state, _stored(state) if resumed else Usage())

    def add(self, usage: Usage) -> None:
        # Written under the lock, so a later total never lands before an earlier one.
        with self._lock:
            self._total += usage
            self._write()

    def _write(self) -> None:
        self._state.set_many(
            {
                INPUT_TOKENS_KEY: str(self._total.input_tokens),
                OUTPUT_TOKENS_KEY: str(self._total.output_tokens),
                COST_KEY: f"{self._total.cost_usd:.6f}",
            }
        )


def _stored(state: StateWriter) -> Usage:
    values = state.read(USAGE_KEYS)
    try:
        return Usage(
            int(values.get(INPUT_TOKENS_KEY, 0)),
            int(values.get(OUTPUT_TOKENS_KEY, 0)),
            float(values.get(COST_KEY, 0)),
        )
    except ValueError:
        log.warning("the stored agent usage is unreadable (%s); counting from 0", values)
        return Usage()


_CURRENT: ContextVar[UsageMeter | None] = ContextVar("usage_meter", default=None)
_running: list[UsageMeter] = []  # the meters of the runs in this process, for other threads
_running_lock = threading.Lock()


@contextmanager
def metering(meter: UsageMeter) -> Iterator[None]:
    """Make ``meter`` the one agents record into while the block runs."""
    token = _CURRENT.set(meter)
    with _running_lock:
        _running.append(meter)
    try:
        yield
    finally:
        with _running_lock:
            _running.remove(meter)
        _CURRENT.reset(token)


def current_meter() -> UsageMeter | None:
    """The meter of the run this code is part of, or None outside any run.

    A thread a task starts itself does not inherit the run's context; it gets
    the process's run when there is exactly one (the case of a workflow
    process), so an agent called from a thread pool is still counted.
    """
    meter = _CURRENT.get()
    if meter is not None:
        return meter
    with _running_lock:
        return _running[0] if len(_running) == 1 else None


def record_message(message: Any, model: str | None = None) -> None:
    """Count one Messages API response against the current run (nothing outside a run)."""
    meter = current_meter()
    if meter is not None:
        meter.add(message_usage(message, model))


def record_envelope(envelope: Mapping[str, Any], model: str) -> None:
    """Count one Claude Code run against the current run (nothing outside a run)."""
    meter = current_meter()
    if meter is not None:
        meter.add(envelope_usage(envelope, model))
