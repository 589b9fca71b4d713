"""The model's read-only tools, for when the evidence pack is not enough.

Three kinds, all reading, none changing anything: more lines of the
workflow's log that match a pattern, the recent events, and files under the
workflow's ``cwd`` through the SDK's confined ``read``/``grep``/``glob``
(never ``write``, ``edit`` or ``bash``), behind the secrets rule
(``supervisor.filetools``).

Every result is redacted and becomes an evidence item of its own
(``tool:1``, ``tool:2``…), so the model can quote it and the code check
(``check.py``) can verify the quote like any other.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from supervisor.diagnosis.types import EvidenceItem, EvidenceKind

if TYPE_CHECKING:  # the SDK is imported when a tool is made: it takes seconds
    from anthropic.lib.tools import BetaAsyncFunctionTool

MAX_LOG_LINES = 200


@dataclass(frozen=True, slots=True)
class Sources:
    """Where the tools may look beyond the pack; a tool whose source is missing is not offered."""

    log_path: Path | None = None
    cwd: Path | None = None
    events: tuple[str, ...] = ()  # recent events, one line each, oldest first


@dataclass
class Findings:
    """What the tools returned, as evidence items the model may cite."""

    redact: Callable[[str], str]
    items: list[EvidenceItem] = field(default_factory=list)

    def add(self, kind: EvidenceKind, text: str) -> str:
        """Keep ``text`` (redacted) as a new item; the tool result, headed by its id."""
        item = EvidenceItem(f"tool:{len(self.items) + 1}", kind, self.redact(text))
        self.items.append(item)
        return f"[evidence id: {item.id}]\n{item.text}"


def read_only_tools(sources: Sources, findings: Findings) -> list[BetaAsyncFunctionTool[Any]]:
    """The tools for these sources, each adding what it returns to ``findings``."""
    from supervisor.filetools import read_only_file_tools

    tools: list[BetaAsyncFunctionTool[Any]] = []
    if sources.log_path is not None:
        tools.append(_log_tool(sources.log_path, findings))
    if sources.events:
        tools.append(_events_tool(sources.events, findings))
    if sources.cwd is not None:
        tools += read_only_file_tools(sources.cwd, after=lambda text: findings.add("source", text))
    return tools


def _log_tool(log_path: Path, findings: Findings) -> BetaAsyncFunctionTool[Any]:
    from anthropic import beta_async_tool
    from anthropic.lib.tools import ToolError

    @beta_async_tool
    async def log_lines(pattern: str) -> str:
        """The last 200 lines of the workflow's log that match a regular expression, numbered."""
        try:
            wanted = re.compile(pattern)
        except re.error as exc:
            raise ToolError(f"bad pattern: {exc}") from exc
        lines = await asyncio.to_thread(_matching_lines, log_path, wanted)
        return findings.add("log", "\n".join(lines) or "no line matches")

    return log_lines


def _matching_lines(log_path: Path, wanted: re.Pattern[str]) -> list[str]:
    matches: list[str] = []
    with log_path.open(encoding="utf-8", errors="replace") as log:
        for number, line in enumerate(log, start=1):
            if wanted.search(line):
                matches = [*matches[-(MAX_LOG_LINES - 1) :], f"{number}: {line.rstrip()}"]
    return matches


def _events_tool(events: tuple[str, ...], findings: Findings) -> BetaAsyncFunctionTool[Any]:
    from anthropic import beta_async_tool

    @beta_async_tool
    async def recent_events() -> str:
        """The workflow's recent events (starts, exits, signals, restarts, hangs), oldest first."""
        return findings.add("event", "\n".join(events))

    return recent_events
