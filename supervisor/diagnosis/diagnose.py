"""``/why`` as one call: the rules' verdict improved by Claude when it is configured, cached.

``Diagnoser.diagnose`` is what the Supervisor API, the CLI and the bot call.
Without ``ANTHROPIC_API_KEY`` it returns the rules' verdict with a note and
sends nothing. With it, one diagnosis runs per workflow at a time (a second
ask waits for the first, then finds its answer in the cache when it is the
same failure), and a checked answer is kept by (workflow, failure
signature, code version), so pressing Why? twice costs nothing.

What it does not promise: the cache is in memory, so it is empty after a
restart and not shared between hosts; an answer that did not come (Claude
unavailable, the daily cap reached) is not cached, so asking again tries
again.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Callable

from sqlalchemy import Engine

from supervisor.agentsettings import AgentSettings
from supervisor.claudeclient import ClientFactory, redacting_client
from supervisor.diagnosis.check import INCONCLUSIVE, fallback
from supervisor.diagnosis.tools import Sources
from supervisor.diagnosis.types import EvidencePack, Verdict
from supervisor.secrets import Redactor, secret_values
from supervisor.spend import SpendLedger

NOT_CONFIGURED = "Claude is not configured (ANTHROPIC_API_KEY); the rules' verdict"
CacheKey = tuple[str, str, str | None]


class Diagnoser:
    """Answers ``/why`` for any workflow; one per process, shared by every transport."""

    def __init__(
        self,
        settings: AgentSettings,
        engine: Engine,
        *,
        redactor: Redactor | None = None,
        client_factory: ClientFactory = redacting_client,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        """``redactor`` knows the caller's secrets (the bot token, say); the API key is added."""
        self.settings = settings
        self.ledger = SpendLedger(
            engine, cap_usd=settings.agent_max_usd_per_day, clock=wall_clock, zone=settings.zone
        )
        self.redactor = (redactor or Redactor()).including(secret_values(settings))
        self.client_factory = client_factory
        self.clock = clock
        self._cache: dict[CacheKey, Verdict] = {}
        self._busy: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)

    async def diagnose(
        self,
        pack: EvidencePack,
        rules_verdict: Verdict,
        *,
        sources: Sources | None = None,
        secrets: tuple[str, ...] = (),
    ) -> Verdict:
        """The verdict on ``pack``: Claude's, checked, or the rules' with a note saying why.

        ``sources`` lets the model's tools read more (the log file, events, ``cwd``);
        ``secrets`` are literals to redact besides the known ones (the workflow's ``env`` values).
        """
        if not self.settings.configured:
            return fallback(rules_verdict, NOT_CONFIGURED)
        key = (pack.workflow, pack.signature, pack.code_version)
        async with self._busy[pack.workflow]:
            if key in self._cache:
                return self._cache[key]
            from supervisor.diagnosis.model import ask_model  # the SDK: only when asking

            verdict = await ask_model(
                pack,
                rules_verdict,
                settings=self.settings,
                ledger=self.ledger,
                redactor=self.redactor.including(secrets),
                sources=sources or Sources(),
                client_factory=self.client_factory,
                clock=self.clock,
            )
            if verdict.source == "model" or (verdict.note or "").startswith(INCONCLUSIVE):
                self._cache[key] = verdict
        return verdict
