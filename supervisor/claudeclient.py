"""A Claude client whose every request body passes through the redactor on its way out.

Redacting the evidence where it is gathered is not enough to promise that no
secret reaches the API: a tool result, an error message or a retry is built
later, elsewhere. So the client's HTTP transport is the one funnel: it
decodes each JSON body, redacts every string in it (but the few fields that
only give its structure: roles, types, ids, schemas) and sends that. Whatever
the diagnosis, the bridge or heal put in a request, the same rule holds.

What it does not promise: what the redactor does not recognise
(``supervisor.secrets``) goes out as it is.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import httpx2

from supervisor.agentsettings import AgentSettings

if TYPE_CHECKING:  # anthropic takes seconds to import: imported where Claude is called, then
    import anthropic

Redact = Callable[[str], str]
ClientFactory = Callable[[AgentSettings, Redact], "anthropic.AsyncAnthropic"]


async def sdk_ready() -> None:
    """Import the SDK, the first time, in a worker thread: on the event loop its second
    or more would hold up every alert and command meanwhile."""
    if "anthropic" not in sys.modules:
        await asyncio.to_thread(importlib.import_module, "anthropic")


def is_api_error(exc: BaseException) -> bool:
    """Whether ``exc`` is the API's (an outage, a refusal), without importing the SDK first."""
    import anthropic

    return isinstance(exc, anthropic.APIError)


# Fields that hold the request's structure, never evidence: redacting a value there (an env
# value "user" in a role, say) would break the request and hide nothing.
_STRUCTURE = frozenset(
    {
        "type",
        "role",
        "model",
        "id",
        "tool_use_id",
        "name",
        "input_schema",
        "output_config",
        "signature",  # a thinking block's seal: altered, the API refuses the conversation
    }
)
# The SDK's own retries of 429, 5xx and 529, with its backoff; the caller's deadline bounds them.
MAX_RETRIES = 3


class RedactingTransport(httpx2.AsyncBaseTransport):
    """Sends each request with every string of its JSON body redacted."""

    def __init__(self, redact: Redact, inner: httpx2.AsyncBaseTransport | None = None) -> None:
        self.redact = redact
        self.inner = inner or httpx2.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        body = await request.aread()
        if not body:
            return await self.inner.handle_async_request(request)
        redacted = redact_body(body, self.redact)
        headers = [(k, v) for k, v in request.headers.raw if k.lower() != b"content-length"]
        outgoing = httpx2.Request(
            request.method,
            request.url,
            headers=headers,
            content=redacted,
            extensions=request.extensions,
        )
        return await self.inner.handle_async_request(outgoing)

    async def aclose(self) -> None:
        await self.inner.aclose()


def redact_body(body: bytes, redact: Redact) -> bytes:
    """``body`` with every string of its JSON redacted (the whole text, if it is not JSON).

    Public because Claude Code's requests are redacted by the same rule on
    their way through ``supervisor.agent.proxy``.
    """
    try:
        return json.dumps(_redacted(json.loads(body), redact)).encode()
    except ValueError:  # not JSON: redact it as text
        return redact(body.decode("utf-8", errors="replace")).encode()


def _redacted(value: Any, redact: Redact) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, list):
        return [_redacted(item, redact) for item in value]
    if isinstance(value, dict):
        return {
            key: item if key in _STRUCTURE else _redacted(item, redact)
            for key, item in value.items()
        }
    return value


def redacting_client(settings: AgentSettings, redact: Redact) -> anthropic.AsyncAnthropic:
    """An ``AsyncAnthropic`` for ``settings`` (key, base URL, timeout), redacting every request."""
    import anthropic

    key = settings.anthropic_api_key
    return anthropic.AsyncAnthropic(
        api_key=key.get_secret_value() if key else None,
        base_url=settings.anthropic_base_url,
        timeout=settings.agent_timeout_seconds,
        max_retries=MAX_RETRIES,
        http_client=anthropic.DefaultAsyncHttpxClient(transport=RedactingTransport(redact)),
    )


def unavailable_reason(exc: Exception) -> str:
    """A few words on why Claude did not answer (timed out, overloaded...), for a note."""
    import anthropic

    if isinstance(exc, TimeoutError | anthropic.APITimeoutError):
        return "timed out"
    if isinstance(exc, anthropic.APIConnectionError):
        return "unreachable"
    if isinstance(exc, anthropic.APIStatusError):
        if exc.status_code == 529:
            return "overloaded"
        if exc.status_code == 429:
            return "rate limited"
        return f"error {exc.status_code}"
    return type(exc).__name__
