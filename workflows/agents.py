"""Agents: what a task asks to do the thinking.

Every agent takes a prompt and, when given a pydantic model as ``output``,
returns a validated instance of it, so a task's return value is typed and
checkpointable. ``ClaudeAgent`` calls the Messages API with structured
output; ``ClaudeCodeAgent`` drives the ``claude`` CLI in the workflow's
directory (it can edit files there); ``ScriptedAgent`` answers offline from
prepared replies, for the demo, for tests and for trying a workflow's shape
before spending tokens.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, overload

from pydantic import BaseModel, ValidationError

from workflows.current import current_task
from workflows.errors import WorkflowError
from workflows.toolrunner import reply_text, run_with_tools
from workflows.usage import record_envelope, record_message

if TYPE_CHECKING:
    import anthropic

M = TypeVar("M", bound=BaseModel)
DEFAULT_MODEL = "claude-sonnet-4-6"

# A prepared reply: a value (dict, model, str), an exception to raise, or a
# function of the prompt returning either.
Reply = Any


class AgentError(WorkflowError):
    """An agent could not produce a usable answer."""


class Agent(Protocol):
    """Anything that turns a prompt into text, or into a validated ``output`` model."""

    @overload
    def run(self, prompt: str, *, output: type[M]) -> M: ...

    @overload
    def run(self, prompt: str, *, output: None = None) -> str: ...

    def run(self, prompt: str, *, output: type[M] | None = None) -> M | str: ...


def _coerce(value: Any, output: type[M] | None) -> M | str:
    """Turn a prepared or parsed value into what the caller asked for."""
    if output is None:
        return value if isinstance(value, str) else json.dumps(value)
    if isinstance(value, output):
        return value
    if isinstance(value, str):
        return output.model_validate_json(value)
    if isinstance(value, BaseModel):
        return output.model_validate(value.model_dump())
    return output.model_validate(value)


class ScriptedAgent:
    """Offline agent: replies prepared per task id, in call order.

    ``replies["review"] = [first, second, ...]`` answers the first call of the
    task ``review`` in a run with ``first`` and so on; the last one repeats.
    ``delay`` seconds of pretend thinking make a demo look like real work.
    """

    def __init__(
        self, replies: Mapping[str, Reply | Sequence[Reply]], *, delay: float = 0.0
    ) -> None:
        self.replies = dict(replies)
        self.delay = delay
        self.prompts: list[tuple[str, str]] = []  # (task id, prompt), for inspection

    @overload
    def run(self, prompt: str, *, output: type[M]) -> M: ...

    @overload
    def run(self, prompt: str, *, output: None = None) -> str: ...

    def run(self, prompt: str, *, output: type[M] | None = None) -> M | str:
        call = current_task()
        task_id = call.task_id if call else "default"
        if task_id not in self.replies:
            raise AgentError(f"ScriptedAgent has no reply for task {task_id!r}")
        self.prompts.append((task_id, prompt))
        prepared = self.replies[task_id]
        if isinstance(prepared, list | tuple):
            prepared = prepared[min(call.occurrence if call else 0, len(prepared) - 1)]
        if self.delay:
            time.sleep(self.delay)
        if callable(prepared) and not isinstance(prepared, type):
            prepared = prepared(prompt)
        if isinstance(prepared, BaseException):
            raise prepared
        return _coerce(prepared, output)


class ClaudeAgent:
    """The Messages API, with structured output parsed into the task's pydantic model.

    API errors (429, 5xx, 529 overloaded) are retried by the SDK
    (``max_retries``; left as the client's own setting when None) and after
    that by the task's own retries. A reply that
    does not validate is asked for again ``validation_retries`` times, then
    raised as ``AgentError`` naming the model and the first problem. Every
    response, retries and tool rounds included, counts toward the run's usage.
    """

    def __init__(
        self,
        *,
        system: str | None = None,
        model: str | None = None,
        max_tokens: int = 4096,
        validation_retries: int = 1,
        max_retries: int | None = None,
        client: anthropic.Anthropic | None = None,
        workdir: Path | None = None,
        tools: Sequence[Any] = (),
        max_tool_rounds: int = 50,
    ) -> None:
        self.system = system
        self.workdir = workdir
        self.tools = tuple(tools)
        self.max_tool_rounds = max_tool_rounds
        self.model = model or os.environ.get("ANTHROPIC_MODEL") or DEFAULT_MODEL
        self.max_tokens = max_tokens
        self.validation_retries = validation_retries
        self.max_retries = max_retries
        self._client = client

    @property
    def client(self) -> anthropic.Anthropic:
        if self._client is None:
            import anthropic

            # Reads ANTHROPIC_API_KEY and ANTHROPIC_BASE_URL from the environment.
            self._client = anthropic.Anthropic()
        if self.max_retries is not None and self._client.max_retries != self.max_retries:
            # Also for a client passed in: the agent's setting is the one its docstring promises.
            self._client = self._client.with_options(max_retries=self.max_retries)
        return self._client

    def _request(self, prompt: str, output: type[BaseModel] | None) -> dict[str, Any]:
        request: dict[str, Any] = {
            "model": self.model,
            "max_tokens": self.max_tokens,
            "messages": [{"role": "user", "content": prompt}],
        }
        if self.system:
            request["system"] = self.system
        if output is not None:
            from anthropic import transform_schema

            # The API is held to the schema; the reply is validated here, once its usage is
            # counted (the SDK's own parsing would raise before that).
            schema = {"type": "json_schema", "schema": transform_schema(output)}
            request["output_config"] = {"format": schema}
        return request

    @overload
    def run(self, prompt: str, *, output: type[M]) -> M: ...

    @overload
    def run(self, prompt: str, *, output: None = None) -> str: ...

    def run(self, prompt: str, *, output: type[M] | None = None) -> M | str:
        if output is None:
            return self._ask(prompt, None)
        problem: Exception | None = None
        for _ in range(self.validation_retries + 1):
            text = self._ask(prompt, output)
            if not text:
                problem = AgentError("the reply held no text to parse")
                continue
            try:
                return output.model_validate_json(text)
            except ValidationError as exc:
                problem = exc
        raise AgentError(
            f"reply did not validate as {output.__name__} after "
            f"{self.validation_retries + 1} tries: {_first_line(problem)}"
        )

    def _ask(self, prompt: str, output: type[BaseModel] | None) -> str:
        """One exchange: the reply's text; every response's usage is counted as it arrives.

        With ``workdir`` or ``tools`` it is a whole tool-using conversation,
        run by the SDK's tool runner until the model stops asking for tools.
        """
        request = self._request(prompt, output)
        if self.workdir is not None or self.tools:
            return run_with_tools(
                request,
                workdir=self.workdir,
                tools=self.tools,
                max_rounds=self.max_tool_rounds,
                max_retries=self.max_retries,
            )
        reply = self.client.messages.create(**request)
        record_message(reply, self.model)
        return reply_text(reply)


def _first_line(problem: Exception | None) -> str:
    if isinstance(problem, ValidationError):
        first = problem.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "reply"
        return f"{where}: {first['msg']}"
    return str(problem)


_JSON_BLOCK = re.compile(r"```(?:json)?\s*(\{.*?\})\s*```", re.DOTALL)


def _envelope(stdout: str) -> dict[str, Any] | None:
    """The JSON object ``claude -p --output-format json`` printed, or None."""
    try:
        envelope = json.loads(stdout)
    except json.JSONDecodeError:
        return None
    return envelope if isinstance(envelope, dict) else None


def _extract_json(text: str) -> str:
    """The JSON object in a free-text reply: a fenced block, else the outermost braces."""
    fenced = _JSON_BLOCK.search(text)
    if fenced:
        return fenced.group(1)
    start, end = text.find("{"), text.rfind("}")
    if start == -1 or end < start:
        raise AgentError(f"no JSON object in the reply: {text[:200]!r}")
    return text[start : end + 1]


class ClaudeCodeAgent:
    """The ``claude`` CLI run non-interactively (``-p --output-format json``) in ``cwd``.

    Unlike ``ClaudeAgent`` it can read and edit the repository it runs in.
    For structured output the model's JSON schema is put in the prompt and the
    JSON object in the reply is validated. The usage the CLI reports counts
    toward the run's, a run that ended in an error included.
    """

    def __init__(
        self,
        *,
        system: str | None = None,
        model: str | None = None,
        cwd: Path | None = None,
        timeout: float = 3600.0,
        executable: str = "claude",
        extra_args: Sequence[str] = (),
    ) -> None:
        self.system = system
        self.model = model
        self.cwd = cwd
        self.timeout = timeout
        self.executable = executable
        self.extra_args = tuple(extra_args)

    @staticmethod
    def available(executable: str = "claude") -> bool:
        """Whether the CLI is on PATH; workflows fall back to another agent when not."""
        return shutil.which(executable) is not None

    def _argv(self, prompt: str) -> list[str]:
        argv = [self.executable, "-p", prompt, "--output-format", "json"]
        if self.model:
            argv += ["--model", self.model]
        if self.system:
            argv += ["--append-system-prompt", self.system]
        return argv + list(self.extra_args)

    @overload
    def run(self, prompt: str, *, output: type[M]) -> M: ...

    @overload
    def run(self, prompt: str, *, output: None = None) -> str: ...

    def run(self, prompt: str, *, output: type[M] | None = None) -> M | str:
        if output is not None:
            schema = json.dumps(output.model_json_schema())
            prompt = f"{prompt}\n\nAnswer with one JSON object matching this JSON schema:\n{schema}"
        if not self.available(self.executable):
            raise AgentError(
                f"{self.executable!r} is not on PATH; install Claude Code or use ClaudeAgent"
            )
        try:
            completed = subprocess.run(
                self._argv(prompt),
                cwd=self.cwd,
                capture_output=True,
                text=True,
                timeout=self.timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise AgentError(f"claude did not answer within {self.timeout:g}s") from exc
        envelope = _envelope(completed.stdout)
        if envelope is not None:
            record_envelope(envelope, self.model or DEFAULT_MODEL)  # a failed run cost money too
            if envelope.get("is_error"):
                raise AgentError(f"claude reported an error: {envelope.get('result')}")
        if completed.returncode != 0:
            raise AgentError(
                f"claude exited {completed.returncode}: {completed.stderr.strip()[-500:]}"
            )
        if envelope is None:
            raise AgentError(f"claude printed no JSON result: {completed.stdout[:200]!r}")
        text = str(envelope.get("result", ""))
        if output is None:
            return text
        try:
            return output.model_validate_json(_extract_json(text))
        except ValidationError as exc:
            raise AgentError(
                f"claude's reply did not validate as {output.__name__}: {_first_line(exc)}"
            ) from exc


def default_agent(
    offline: Mapping[str, Reply | Sequence[Reply]],
    *,
    system: str | None = None,
    delay: float = 0.0,
    workdir: Path | None = None,
) -> Agent:
    """``ClaudeAgent`` when ``ANTHROPIC_API_KEY`` is set, else a ``ScriptedAgent`` over ``offline``.

    The bundled examples use it so they run anywhere, and for real with a key;
    ``workdir`` gives the real agent file tools confined to that directory.
    """
    if os.environ.get("ANTHROPIC_API_KEY"):
        return ClaudeAgent(system=system, workdir=workdir)
    return ScriptedAgent(offline, delay=delay)
