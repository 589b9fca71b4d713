"""A ``ClaudeAgent`` that works on files: the SDK's tool runner with its file tools.

The anthropic SDK ships both the loop (call the model, run the tools it asks
for, send the results, repeat) and reference file tools (read, write, edit,
glob, grep) that stay inside a working directory, symlinks included. They
are async, so one conversation runs in its own event loop; tasks are plain
functions and have none of their own. Every round's response counts toward
the run's usage as it arrives. The SDK's ``bash`` tool is left out on
purpose: it is unconfined and would outlive the conversation.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from workflows.usage import record_message


def reply_text(message: Any) -> str:
    """The text blocks of a reply, joined."""
    return "".join(block.text for block in message.content if block.type == "text")


def file_tools(workdir: Path) -> list[Any]:
    """The SDK's read, write, edit, glob and grep tools, confined to ``workdir``."""
    from anthropic.lib.tools.agent_toolset import (
        AgentToolContext,
        beta_edit_tool,
        beta_glob_tool,
        beta_grep_tool,
        beta_read_tool,
        beta_write_tool,
    )

    context = AgentToolContext(workdir=str(workdir))
    makers = (beta_read_tool, beta_write_tool, beta_edit_tool, beta_glob_tool, beta_grep_tool)
    return [make(context) for make in makers]


def run_with_tools(
    request: dict[str, Any],
    *,
    workdir: Path | None,
    tools: Sequence[Any],
    max_rounds: int,
    max_retries: int | None,
) -> str:
    """Run one tool-using conversation to its end; the final reply's text."""
    every_tool = [*tools, *(file_tools(workdir) if workdir is not None else [])]
    conversation = {**request, "tools": every_tool, "max_iterations": max_rounds}
    options: dict[str, Any] = {} if max_retries is None else {"max_retries": max_retries}
    return asyncio.run(_converse(conversation, options))


async def _converse(conversation: dict[str, Any], options: dict[str, Any]) -> str:
    import anthropic

    # Reads ANTHROPIC_API_KEY and ANTHROPIC_BASE_URL from the environment, like ClaudeAgent.
    async with anthropic.AsyncAnthropic(**options) as client:
        runner = client.beta.messages.tool_runner(**conversation)
        async for reply in runner:  # each round, counted as it arrives
            record_message(reply, conversation["model"])
        final = await runner.until_done()
    return reply_text(final)
