"""A stand-in Healthchecks.io endpoint on 127.0.0.1 that records every ping's path.

``url`` has a secret-looking UUID path, as a real check URL has, so tests can
assert it never reaches a log. ``set_down`` makes every ping answer 500.
"""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler
from typing import Any

from tests.fakes.botapi import BackgroundServer

CHECK = "/0f7a3c52-9d1e-4b8a-a6f2-5c3d8e1b9a40"


class PingServer(BackgroundServer):
    """Records the path of each GET (``/``, ``/start``, ``/fail`` after the check's UUID)."""

    def __init__(self) -> None:
        super().__init__()
        self.pings: list[str] = []
        self.down = False
        self._cond = threading.Condition()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{CHECK}"

    def set_down(self, down: bool = True) -> None:
        self.down = down

    def count(self, kind: str) -> int:
        """Pings of ``kind`` so far: ``""`` (plain), ``"start"`` or ``"fail"``."""
        with self._cond:
            return sum(ping == kind for ping in self.pings)

    def wait_for(self, kind: str, count: int = 1, timeout: float = 5.0) -> list[str]:
        """Block until ``count`` pings of ``kind`` arrived; return all pings so far."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while sum(ping == kind for ping in self.pings) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"wanted {count} {kind!r} pings, got {self.pings!r}")
                self._cond.wait(left)
            return list(self.pings)

    def _record(self, path: str) -> int:
        with self._cond:
            self.pings.append(path.removeprefix(CHECK).lstrip("/"))
            self._cond.notify_all()
        return 500 if self.down else 200

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                status = server._record(self.path)
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"OK")

            def log_message(self, format: str, *args: Any) -> None:
                """Keep test output quiet."""

        return Handler
