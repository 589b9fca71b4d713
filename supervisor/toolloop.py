"""One tool-using conversation that must end in a parsed answer: ``/why`` and heal share it.

The SDK's tool runner for at most ``max_rounds`` rounds, every round's input
counted and checked against the conversation's budget before it is sent;
a model still asking for tools at the cap gets one last call in which it
may not use them (``tool_choice: none``; the tools stay defined because the
history holds their calls). The whole history goes with every request (no
server-side thread state), so any gateway works.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from supervisor.spend import Budget

if TYPE_CHECKING:
    import anthropic


async def parsed_answer(
    client: anthropic.AsyncAnthropic,
    request: dict[str, Any],
    prompt: str,
    tools: Sequence[Any],
    *,
    budget: Budget,
    max_rounds: int,
    last_words: str,
    first_input: int | None = None,
) -> Any:
    """The model's answer, parsed into ``request["output_format"]`` (None if it gave none).

    ``request`` holds the model, ``max_tokens``, ``system`` and ``output_format``;
    ``last_words`` is the message that asks for the answer at the round cap;
    ``first_input``: the first request's tokens, when the caller counted them already.
    """
    history: list[Any] = [{"role": "user", "content": prompt}]
    if first_input is None:
        first_input = await count_input(client, request, history, tools)
    budget.check(first_input)
    runner = client.beta.messages.tool_runner(
        **request,
        messages=list(history),
        tools=list(tools),
        max_iterations=max_rounds,
        thread=False,
    )
    last = None
    try:
        async for message in runner:
            budget.tally.add(message)
            history.append(message.to_param())
            last = message
            if message.stop_reason == "tool_use":
                results = await runner.generate_tool_call_response()
                if results is not None:
                    history.append(results)
                budget.check(await count_input(client, request, history, tools))
    finally:
        await runner.close()  # a cancelled conversation leaves no request open
    if last is not None and last.stop_reason != "tool_use":
        return last.parsed_output
    history.append({"role": "user", "content": last_words})
    budget.check(await count_input(client, request, history, tools))
    final = await client.beta.messages.parse(
        **request,
        messages=history,
        tools=[tool.to_dict() for tool in tools],
        tool_choice={"type": "none"},
    )
    budget.tally.add(final)
    return final.parsed_output


async def count_input(
    client: anthropic.AsyncAnthropic,
    request: dict[str, Any],
    history: list[Any],
    tools: Sequence[Any],
) -> int:
    """The input tokens of the next request: the conversation so far, counted by the API."""
    counted = await client.beta.messages.count_tokens(
        model=request["model"],
        system=request["system"],
        messages=history,
        tools=[tool.to_dict() for tool in tools],
    )
    return int(counted.input_tokens)
