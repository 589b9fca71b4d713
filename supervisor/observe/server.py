"""The HTTP side of ``METRICS_ADDR``: a stdlib ``ThreadingHTTPServer`` in a thread of its own.

It only renders what the loop and the DB thread left (``bot.observe.metrics``,
``bot.observe.health``), so no request ever waits on the event loop, and a
slow scraper never slows the bot. ``GET /metrics``, ``/healthz`` and
``/readyz``; anything else is 404.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST

from supervisor.observe.health import Answer

log = logging.getLogger("supervisor.observe")
ALL_INTERFACES = "0.0.0.0"  # only when METRICS_ADDR says ":PORT"


def parse_addr(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:9464`` for IPv6; ``:9464`` for every interface; port 0: any
    free port) as a host and a port; ValueError otherwise."""
    host, colon, port = text.strip().rpartition(":")
    if not colon or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{text!r} is not HOST:PORT (e.g. 127.0.0.1:9464)")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ValueError(f"{text!r}: write an IPv6 host in brackets, e.g. [::1]:9464")
    return host or ALL_INTERFACES, int(port)


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # a scraper that hangs up never holds the bot's exit

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("metrics: a request from %s failed", client_address, exc_info=True)


class _Server6(_Server):
    address_family = socket.AF_INET6


# path -> what to answer: an HTTP status, the body, its content type
Route = Callable[[], tuple[int, bytes, str]]
PLAIN = "text/plain; charset=utf-8"


def plain(answer: Callable[[], Answer]) -> Route:
    """A route answering ``answer()``'s status and line."""

    def route() -> tuple[int, bytes, str]:
        said = answer()
        return said.status, f"{said.body}\n".encode(), PLAIN

    return route


def prometheus(render: Callable[[], bytes]) -> Route:
    """The ``/metrics`` route: ``render``'s bytes in Prometheus's text format."""
    return lambda: (int(HTTPStatus.OK), render(), CONTENT_TYPE_LATEST)


class HttpEndpoint:
    """Serves ``routes`` on ``host:port`` from a daemon thread, until ``close``."""

    def __init__(self, host: str, port: int, routes: dict[str, Route]) -> None:
        """Binds at once: ``OSError`` (the port is taken, the host is not ours) propagates."""
        server_type = _Server6 if ":" in host else _Server
        self._server = server_type((host, port), _handler(routes))
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.2}, name="metrics-http"
        )
        self._thread.daemon = True
        self._thread.start()

    def close(self) -> None:
        """Stop serving and free the port (blocking: a fraction of a second)."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


def _handler(routes: dict[str, Route]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "agent-control-plane"

        def do_GET(self) -> None:
            route = routes.get(self.path.split("?", 1)[0])
            if route is None:
                status, body, content_type = int(HTTPStatus.NOT_FOUND), b"not found\n", PLAIN
            else:
                status, body, content_type = route()
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("metrics: " + format, *args)

    return Handler
