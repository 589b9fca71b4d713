"""A loopback HTTP proxy that redacts every request Claude Code sends to the Messages API.

Claude Code is a program of its own making its own HTTP requests, so the
redacting client of ``supervisor.claudeclient`` cannot cover it. Pointed at
this proxy (``ANTHROPIC_BASE_URL``), each of its request bodies passes
through ``redact_body``, the client's rule, on its way to the upstream base
URL; the headers (the API key among them) pass as they are, and the answer
streams back byte for byte as it arrives, so server-sent events are not held
up. It listens on 127.0.0.1, on a port of its own, for as long as it is open.

What it does not promise: it covers only what is sent to it, so a request
the CLI makes elsewhere (telemetry, which the runner turns off) does not pass
here; it speaks plain HTTP/1.1 with a ``Content-Length`` body (no chunked or
compressed request bodies, which it refuses rather than pass unread, no
CONNECT); any process on this host can use the port while it is open (it adds
nothing to a request, not even the key).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass
from types import TracebackType
from typing import Self

import httpx2

from supervisor.claudeclient import Redact, redact_body

LOOPBACK = "127.0.0.1"
# Headers about one hop of the connection, not the request: never forwarded either way.
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "expect",
        "host",
        "content-length",
    }
)
_NO_BODY_STATUSES = frozenset({204, 304})


@dataclass(frozen=True, slots=True)
class _Request:
    method: str
    target: str  # the path and query, as the client sent them
    headers: list[tuple[str, str]]
    body: bytes
    keep_alive: bool

    def header(self, name: str) -> str:
        return next((value for key, value in self.headers if key.lower() == name), "")


class _Refused(Exception):
    """A request this proxy cannot forward: answered with ``status``, then the connection closes."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


class RedactingProxy:
    """The proxy, open for the length of an ``async with``: ``url`` is its base URL."""

    def __init__(self, upstream: str, redact: Redact, *, timeout: float) -> None:
        self.upstream = upstream.rstrip("/")
        self.redact = redact
        self._timeout = timeout
        self._server: asyncio.Server | None = None
        self._client: httpx2.AsyncClient | None = None
        self._connections: set[asyncio.Task[object]] = set()

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the proxy is not open")
        port = self._server.sockets[0].getsockname()[1]
        return f"http://{LOOPBACK}:{port}"

    async def __aenter__(self) -> Self:
        self._client = httpx2.AsyncClient(timeout=self._timeout)
        self._server = await asyncio.start_server(self._serve, LOOPBACK, 0)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Close the port and every connection still open (a client killed mid-request)."""
        if self._server is not None:
            self._server.close()
            for task in list(self._connections):
                task.cancel()
            await asyncio.gather(*self._connections, return_exceptions=True)
            await self._server.wait_closed()
            self._server = None
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            while (request := await _read_request(reader)) is not None:
                await self._forward(request, writer)
                if not request.keep_alive:
                    break
        except _Refused as refused:
            with contextlib.suppress(ConnectionError):
                await _send_error(writer, refused.status, str(refused))
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass  # the client hung up mid-request: nobody is left to answer
        except httpx2.HTTPError:
            pass  # upstream failed mid-answer: closing tells the client the answer is cut
        finally:
            self._connections.discard(task)
            writer.close()

    async def _forward(self, request: _Request, writer: asyncio.StreamWriter) -> None:
        assert self._client is not None
        headers = [(k, v) for k, v in request.headers if k.lower() not in _HOP_BY_HOP]
        body = redact_body(request.body, self.redact) if request.body else b""
        outgoing = self._client.build_request(
            request.method, self.upstream + request.target, headers=headers, content=body
        )
        try:
            response = await self._client.send(outgoing, stream=True)
        except httpx2.HTTPError as exc:
            raise _Refused(502, f"upstream unreachable ({type(exc).__name__})") from exc
        try:
            bodiless = request.method == "HEAD" or response.status_code in _NO_BODY_STATUSES
            head = [f"HTTP/1.1 {response.status_code} {response.reason_phrase}".encode()]
            head += [
                k + b": " + v
                for k, v in response.headers.raw
                if k.lower().decode() not in _HOP_BY_HOP
            ]
            if not bodiless:
                head.append(b"Transfer-Encoding: chunked")
            if not request.keep_alive:
                head.append(b"Connection: close")
            writer.write(b"\r\n".join(head) + b"\r\n\r\n")
            if not bodiless:
                async for chunk in response.aiter_raw():  # as sent: still compressed, if it was
                    if chunk:  # an empty chunk would end the answer
                        writer.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                        await writer.drain()
                writer.write(b"0\r\n\r\n")
            await writer.drain()
        finally:
            await response.aclose()


async def _read_request(reader: asyncio.StreamReader) -> _Request | None:
    """The next request on the connection; None when the client closed it between requests."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        if exc.partial.strip():
            raise
        return None
    request_line, *lines = head[:-4].decode("latin-1").split("\r\n")
    try:
        method, target, version = request_line.split(" ", 2)
        pairs = [line.split(":", 1) for line in lines]
        headers = [(name.strip(), value.strip()) for name, value in pairs]
    except ValueError:
        raise _Refused(400, "not an HTTP request") from None
    request = _Request(method, target, headers, b"", keep_alive=False)
    if request.header("transfer-encoding"):
        raise _Refused(411, "send the body with a Content-Length")
    if request.header("content-encoding") not in ("", "identity"):
        raise _Refused(415, "a compressed body cannot be redacted, so it is not sent")
    connection = request.header("connection").lower()
    keep_alive = connection != "close" if version == "HTTP/1.1" else connection == "keep-alive"
    length = request.header("content-length") or "0"
    if not length.isdigit():
        raise _Refused(400, "bad Content-Length")
    body = await reader.readexactly(int(length))
    return _Request(method, target, headers, body, keep_alive)


async def _send_error(writer: asyncio.StreamWriter, status: int, message: str) -> None:
    """An answer in the Messages API's error shape, so the CLI reports it as an API error."""
    body = json.dumps(
        {"type": "error", "error": {"type": "api_error", "message": f"proxy: {message}"}}
    ).encode()
    head = (
        f"HTTP/1.1 {status} Error\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    writer.write(head.encode() + body)
    await writer.drain()
