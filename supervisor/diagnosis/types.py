"""The values a diagnosis is made of, shared by its pieces and its callers.

An ``EvidencePack`` is gathered in code; every item has an id (``log:142``,
``api.py:42``, ``event:17``, ``state``, ``config``, ``git:diff``) that a
verdict's quotes cite. ``Diagnosis`` is what the model must return
(``messages.parse``); ``Verdict`` is what a person sees, whoever made it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from pydantic import BaseModel, Field

Category = Literal[
    "killed",  # SIGKILL / exit 137: likely out of memory
    "hang",  # alive but silent: a deadlock, an endless loop, a blocked call
    "environment",  # a missing module, a missing binary, a broken venv
    "credentials",  # 401/403, a bad or expired key
    "transient",  # 429, 5xx, DNS, timeouts: a restart likely helps
    "resource",  # disk full, database locked, too many open files
    "config",  # a bad setting or input
    "bug",  # a deterministic error in the workflow's code: restarts will not fix it
    "none",  # nothing has failed
    "unknown",
]
Confidence = Literal["low", "medium", "high"]
EvidenceKind = Literal["state", "event", "log", "source", "config", "git"]


@dataclass(frozen=True, slots=True)
class EvidenceItem:
    """One piece of evidence, already redacted; ``id`` is what quotes cite."""

    id: str
    kind: EvidenceKind
    text: str


@dataclass(frozen=True, slots=True)
class EvidencePack:
    """Everything known about one workflow's failure, gathered without a model."""

    workflow: str
    items: tuple[EvidenceItem, ...]
    signature: str  # the failure's fingerprint (exit or normalised traceback): rules, cache
    code_version: str | None = None  # git HEAD or a hash of the script: the cache key's part
    failures_with_signature: int = 1  # how often this signature came lately (recent events)

    def item(self, item_id: str) -> EvidenceItem | None:
        return next((item for item in self.items if item.id == item_id), None)


class Quote(BaseModel):
    """A verbatim piece of an evidence item, and which one."""

    evidence_id: str = Field(description="the id of the evidence item quoted, e.g. log:142")
    quote: str = Field(description="text copied verbatim from that item")


class Diagnosis(BaseModel):
    """The model's answer, parsed and then checked against the pack."""

    cause: str = Field(description="the most likely cause, one sentence")
    category: Category
    confidence: Confidence
    evidence: list[Quote] = Field(description="quotes that show the cause, verbatim")
    next_steps: list[str] = Field(description="what the person should do next, most useful first")
    restart_helps: bool = Field(description="whether restarting as it is would likely fix it")


Source = Literal["rules", "model"]


@dataclass(frozen=True, slots=True)
class Usage:
    """What answering cost (zero for the rules)."""

    model: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    seconds: float = 0.0


@dataclass(frozen=True, slots=True)
class Verdict:
    """The answer to ``/why``: a cause with its evidence and the next step."""

    workflow: str
    cause: str
    category: Category
    confidence: Confidence
    evidence: tuple[Quote, ...]
    next_steps: tuple[str, ...]
    restart_helps: bool | None
    source: Source
    note: str | None = None  # e.g. "Claude is not configured; the rules answered"
    usage: Usage = field(default_factory=Usage)
