"""The SDK's confined read-only file tools, behind the secrets rule: one guard for every agent.

The SDK's ``read``/``grep``/``glob`` stay inside a working directory
(symlinks included). Here a deny-listed path (``supervisor.secrets.readable``:
``.env*``, keys, tokens) is refused before it is read, and a ``grep``/``glob``
line naming one is dropped from the result, since a search over ``cwd`` would
otherwise print a ``.env``'s lines. ``/why`` and the bridge use the same
tools and differ only in their hooks: what runs before a call (a progress
step, an approval) and what becomes of its text (an evidence item, a
redacted tool result).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from anthropic.lib.tools import BetaAsyncFunctionTool, ToolError

from supervisor.secrets import readable

_PATH_PREFIX = re.compile(r"^(?P<path>[^:\n]+?)(?::\d+:|$)")
Before = Callable[[str, dict[str, Any]], Awaitable[None]]
After = Callable[[str], str]


class GuardedFileTool(BetaAsyncFunctionTool[Any]):
    """One of the SDK's confined file tools, refusing and hiding deny-listed paths."""

    def __init__(
        self,
        inner: BetaAsyncFunctionTool[Any],
        cwd: Path,
        *,
        after: After,
        before: Before | None = None,
    ) -> None:
        super().__init__(
            inner.func,
            name=inner.name,
            description=inner.description,
            input_schema=inner.input_schema,
        )
        self.inner = inner
        self.cwd = cwd
        self.after = after
        self.before = before

    async def call(self, input: object) -> str:
        arguments = dict(input) if isinstance(input, dict) else {}
        asked = arguments.get("file_path") or arguments.get("path")
        if asked and not readable(self.cwd / str(asked), root=self.cwd):
            raise ToolError(f"{self.name}: {asked} may hold secrets and is never read")
        if self.before is not None:
            await self.before(self.name, arguments)
        result = await self.inner.call(input)
        if not isinstance(result, str):
            raise ToolError(f"{self.name}: only text files can be read")
        lines = [line for line in result.splitlines() if self._shown(line)]
        return self.after("\n".join(lines))

    def _shown(self, line: str) -> bool:
        """False for a grep/glob line naming a deny-listed file (read results have no path)."""
        if self.name == "read":
            return True
        match = _PATH_PREFIX.match(line)
        path = Path(match.group("path")) if match else None
        if path is None or not (path.is_absolute() or (self.cwd / path).exists()):
            return True
        return readable(self.cwd / path, root=self.cwd)


def read_only_file_tools(
    cwd: Path, *, after: After, before: Before | None = None
) -> list[BetaAsyncFunctionTool[Any]]:
    """``read``, ``glob`` and ``grep`` confined to ``cwd``, guarded, with these hooks."""
    from anthropic.lib.tools.agent_toolset import (
        AgentToolContext,
        beta_glob_tool,
        beta_grep_tool,
        beta_read_tool,
    )

    context = AgentToolContext(workdir=str(cwd))
    makers = (beta_read_tool, beta_glob_tool, beta_grep_tool)
    return [GuardedFileTool(make(context), cwd, after=after, before=before) for make in makers]
