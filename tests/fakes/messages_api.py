"""A stand-in Anthropic Messages endpoint, so agent tests run the real SDK without the network.

Tests queue replies and errors in order; the server answers each `POST /v1/messages` with the
next one, in the Messages API's JSON shape (or as a server-sent event stream when the request
asks for `stream: true`), and records what was asked (`requests`, with each one's path in `paths`).
`POST /v1/messages/count_tokens` answers without using the queue: about four characters a token.
For a client that makes calls of its own (the Claude Code CLI), `default_reply` answers whatever
finds the queue empty, and with `queued_model` set, requests for other models too.
A queued stall holds its request until the server stops, for tests of a client's time limit.
Point the SDK at it with `ANTHROPIC_BASE_URL=fake.base_url` (child processes) or
`Anthropic(base_url=fake.base_url)`.
"""

from __future__ import annotations

import json
import threading
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import urlsplit

from tests.fakes.botapi import BackgroundServer

JSON = dict[str, Any]
_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}


@dataclass
class _Reply:
    status: int
    body: JSON
    headers: dict[str, str] = field(default_factory=dict)
    stall: bool = False
    gate: threading.Event | None = None  # answered once the test sets it


def tool_results(request: JSON) -> list[JSON]:
    """The tool_result blocks a recorded request sends back to the model."""
    return [
        block
        for message in request["messages"]
        if isinstance(message["content"], list)
        for block in message["content"]
        if block.get("type") == "tool_result"
    ]


def error_body(status: int, message: str | None = None) -> JSON:
    """Anthropic's error envelope for `status`."""
    kind = _ERROR_TYPES.get(status, "api_error")
    return {"type": "error", "error": {"type": kind, "message": message or kind.replace("_", " ")}}


class FakeMessagesAPI(BackgroundServer):
    """An Anthropic Messages API on 127.0.0.1 answering from a queue of canned replies."""

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[JSON] = []
        self.paths: list[str] = []
        self.headers: list[dict[str, str]] = []
        self._replies: deque[_Reply] = deque()
        self._lock = threading.Lock()
        self._count = 0
        self._released = threading.Event()
        self.default_reply: str | None = None
        self.queued_model: str | None = None

    def _before_stop(self) -> None:
        self._released.set()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        return _make_handler(self)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def queue_reply(self, text: str, input_tokens: int = 10, output_tokens: int = 5) -> None:
        """Queue a successful assistant reply whose only content block is `text`."""
        self.queue_message(
            [{"type": "text", "text": text}], "end_turn", input_tokens, output_tokens
        )

    def queue_tool_use(self, name: str, tool_input: JSON, tool_id: str = "toolu_fake") -> None:
        """Queue a reply in which the model asks to run the tool `name` with `tool_input`."""
        block = {"type": "tool_use", "id": tool_id, "name": name, "input": tool_input}
        self.queue_message([block], "tool_use")

    def queue_message(
        self,
        content: list[JSON],
        stop_reason: str = "end_turn",
        input_tokens: int = 10,
        output_tokens: int = 5,
    ) -> None:
        """Queue a successful assistant reply with these content blocks."""
        body = _message(content, stop_reason, input_tokens, output_tokens)
        with self._lock:
            self._replies.append(_Reply(200, body))

    def queue_error(
        self, status: int, body: JSON | None = None, headers: dict[str, str] | None = None
    ) -> None:
        """Queue an error reply (default body: Anthropic's error shape for `status`).

        `headers` such as `{"retry-after-ms": "1"}` or `{"x-should-retry": "false"}` steer the
        SDK's own retries.
        """
        with self._lock:
            self._replies.append(_Reply(status, body or error_body(status), headers or {}))

    def queue_gated_reply(self, text: str) -> threading.Event:
        """Queue a reply that is sent only once the returned event is set (a slow model)."""
        gate = threading.Event()
        body = _message([{"type": "text", "text": text}], "end_turn", 10, 5)
        with self._lock:
            self._replies.append(_Reply(200, body, gate=gate))
        return gate

    def queue_stall(self) -> None:
        """Queue a request that gets no answer until the server stops (then a 500)."""
        with self._lock:
            self._replies.append(_Reply(500, error_body(500, "stalled"), stall=True))

    def message_requests(self) -> list[JSON]:
        """The requests sent to `/v1/messages` itself (not to count_tokens)."""
        with self._lock:
            pairs = zip(self.requests, self.paths, strict=True)
            return [request for request, path in pairs if path == "/v1/messages"]

    @property
    def pending(self) -> int:
        """How many queued replies have not been served yet."""
        with self._lock:
            return len(self._replies)

    def handle(self, path: str, request: JSON, headers: dict[str, str]) -> _Reply:
        """Record one request and pick its reply."""
        with self._lock:
            self.requests.append(request)
            self.paths.append(path.rstrip("/"))
            self.headers.append(headers)
            self._count += 1
            if path.rstrip("/") == "/v1/messages/count_tokens":
                return _Reply(200, {"input_tokens": len(json.dumps(request)) // 4})
            if path.rstrip("/") != "/v1/messages":
                return _Reply(404, error_body(404, f"no route for {path}"))
            other = self.queued_model is not None and request.get("model") != self.queued_model
            if self.default_reply is not None and (other or not self._replies):
                text = [{"type": "text", "text": self.default_reply}]
                reply = _Reply(200, _message(text, "end_turn", 10, 5))
            elif not self._replies:
                return _Reply(500, error_body(500, "no reply queued"), {"x-should-retry": "false"})
            else:
                reply = self._replies.popleft()
        if reply.stall:
            self._released.wait()
        if reply.gate is not None:
            reply.gate.wait(30)
        if reply.status == 200:
            body = {
                "id": f"msg_fake_{self._count}",
                "model": request.get("model", "fake"),
                **reply.body,
            }
            return _Reply(200, body, reply.headers)
        return reply


def _message(content: list[JSON], stop_reason: str, input_tokens: int, output_tokens: int) -> JSON:
    usage = {"input_tokens": input_tokens, "output_tokens": output_tokens}
    return {
        "type": "message",
        "role": "assistant",
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": usage,
    }


def _stream_events(message: JSON) -> list[tuple[str, JSON]]:
    """The server-sent events the SDK expects for a streamed `message` (text and tool_use)."""
    start = {
        **message,
        "content": [],
        "stop_reason": None,
        "usage": {"input_tokens": message["usage"]["input_tokens"], "output_tokens": 0},
    }
    events: list[tuple[str, JSON]] = [("message_start", {"message": start})]
    for index, block in enumerate(message["content"]):
        if block["type"] == "tool_use":
            empty = {**block, "input": {}}
            delta = {"type": "input_json_delta", "partial_json": json.dumps(block["input"])}
        else:
            empty = {"type": "text", "text": ""}
            delta = {"type": "text_delta", "text": block["text"]}
        events += [
            ("content_block_start", {"index": index, "content_block": empty}),
            ("content_block_delta", {"index": index, "delta": delta}),
            ("content_block_stop", {"index": index}),
        ]
    stop = {"stop_reason": message["stop_reason"], "stop_sequence": None}
    usage = {"output_tokens": message["usage"]["output_tokens"]}
    events += [
        ("message_delta", {"delta": stop, "usage": usage}),
        ("message_stop", {}),
    ]
    return events


def _make_handler(fake: FakeMessagesAPI) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            request: JSON = json.loads(self.rfile.read(length) or b"{}")
            headers = {name.lower(): value for name, value in self.headers.items()}
            reply = fake.handle(urlsplit(self.path).path, request, headers)
            if reply.status == 200 and request.get("stream"):
                chunks = [
                    f"event: {name}\ndata: {json.dumps({'type': name, **data})}\n\n"
                    for name, data in _stream_events(reply.body)
                ]
                self._send(200, "".join(chunks).encode(), "text/event-stream", reply.headers)
            else:
                self._send(
                    reply.status, json.dumps(reply.body).encode(), "application/json", reply.headers
                )

        def _send(
            self, status: int, data: bytes, content_type: str, headers: dict[str, str]
        ) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("request-id", "req_fake")
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            """Keep test output quiet."""

    return Handler
