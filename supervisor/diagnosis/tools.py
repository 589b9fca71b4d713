"""The model's read-only tools, for when the evidence pack is not enough.

Three kinds, all reading, none changing anything: more lines of the
workflow's log that match a pattern, the recent events, and files under the
workflow's ``cwd`` through the SDK's confined ``read``/``grep``/``glob``
(never ``write``, ``edit`` or ``bash``). The SDK keeps those inside ``cwd``;
here a deny-listed path (``supervisor.secrets.readable``: ``.env*``, keys,
tokens) is refused before it is read, and a ``grep``/``glob`` line naming
one is dropped from the result, since a search over ``cwd`` would otherwise
print a ``.env``'s lines.

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
from typing import Any

from anthropic import beta_async_tool
from anthropic.lib.tools import BetaAsyncFunctionTool, ToolError

from supervisor.diagnosis.types import EvidenceItem, EvidenceKind
from supervisor.secrets import readable

MAX_LOG_LINES = 200
_PATH_PREFIX = re.compile(r"^(?P<path>[^:\n]+?)(?::\d+:|$)")


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
    tools: list[BetaAsyncFunctionTool[Any]] = []
    if sources.log_path is not None:
        tools.append(_log_tool(sources.log_path, findings))
    if sources.events:
        tools.append(_events_tool(sources.events, findings))
    if sources.cwd is not None:
        tools += _file_tools(sources.cwd, findings)
    return tools


def _log_tool(log_path: Path, findings: Findings) -> BetaAsyncFunctionTool[Any]:
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
    @beta_async_tool
    async def recent_events() -> str:
        """The workflow's recent events (starts, exits, signals, restarts, hangs), oldest first."""
        return findings.add("event", "\n".join(events))

    return recent_events


class _Guarded(BetaAsyncFunctionTool[Any]):
    """One of the SDK's confined file tools, refusing and hiding deny-listed paths."""

    def __init__(self, inner: BetaAsyncFunctionTool[Any], cwd: Path, findings: Findings) -> None:
        super().__init__(
            inner.func,
            name=inner.name,
            description=inner.description,
            input_schema=inner.input_schema,
        )
        self.inner = inner
        self.cwd = cwd
        self.findings = findings

    async def call(self, input: object) -> str:
        asked = input.get("file_path") or input.get("path") if isinstance(input, dict) else None
        if asked and not readable(self.cwd / str(asked), root=self.cwd):
            raise ToolError(f"{self.name}: {asked} may hold secrets and is never read")
        result = await self.inner.call(input)
        if not isinstance(result, str):
            raise ToolError(f"{self.name}: only text files can be read")
        lines = [line for line in result.splitlines() if self._shown(line)]
        return self.findings.add("source", "\n".join(lines))

    def _shown(self, line: str) -> bool:
        """False for a grep/glob line naming a deny-listed file (read results have no path)."""
        if self.name == "read":
            return True
        match = _PATH_PREFIX.match(line)
        path = Path(match.group("path")) if match else None
        if path is None or not (path.is_absolute() or (self.cwd / path).exists()):
            return True
        return readable(self.cwd / path, root=self.cwd)


def _file_tools(cwd: Path, findings: Findings) -> list[BetaAsyncFunctionTool[Any]]:
    from anthropic.lib.tools.agent_toolset import (
        AgentToolContext,
        beta_glob_tool,
        beta_grep_tool,
        beta_read_tool,
    )

    context = AgentToolContext(workdir=str(cwd))
    makers = (beta_read_tool, beta_glob_tool, beta_grep_tool)
    return [_Guarded(make(context), cwd, findings) for make in makers]
