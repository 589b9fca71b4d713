"""systemd's notify protocol, spoken directly over a datagram socket.

With ``Type=notify`` systemd only marks the unit started once we say
``READY=1``, and with ``WatchdogSec=`` it restarts a bot whose event loop has
hung and stopped sending ``WATCHDOG=1``. The protocol is one datagram per
message to the socket named in ``NOTIFY_SOCKET``, so it needs no dependency.
Outside systemd (console, Docker, tests) the variable is absent and every
call is a no-op; a broken socket is logged once and never stops the bot.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping

log = logging.getLogger(__name__)

_USEC_PER_SECOND = 1_000_000


def _socket_address(raw: str) -> str | None:
    """Translate ``NOTIFY_SOCKET`` into an AF_UNIX address (``@name`` is abstract)."""
    if raw.startswith("@"):
        return "\0" + raw[1:]
    if raw.startswith("/"):
        return raw
    return None


class SystemdNotifier:
    """Send readiness, status, stopping and watchdog messages to systemd."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        raw = env.get("NOTIFY_SOCKET", "")
        self._address = _socket_address(raw) if raw else None
        if raw and self._address is None:
            log.warning("NOTIFY_SOCKET %r is not a unix socket; systemd notify disabled", raw)
        self._watchdog_usec = env.get("WATCHDOG_USEC", "")
        self._watchdog_pid = env.get("WATCHDOG_PID", "")
        self._failed = False

    @property
    def enabled(self) -> bool:
        """Whether a notify socket is configured."""
        return self._address is not None

    def ready(self) -> None:
        """Tell systemd that start-up has finished."""
        self._send("READY=1")

    def stopping(self) -> None:
        """Tell systemd that a graceful shutdown has begun."""
        self._send("STOPPING=1")

    def status(self, text: str) -> None:
        """Set the one-line status shown by ``systemctl status``."""
        self._send("STATUS=" + " ".join(text.splitlines()))

    def watchdog(self) -> None:
        """Ping the watchdog: the bot's event loop is alive."""
        self._send("WATCHDOG=1")

    def watchdog_interval(self) -> float | None:
        """Seconds between watchdog pings (half the period), or None if no watchdog is asked for."""
        if self._watchdog_pid and self._watchdog_pid != str(os.getpid()):
            return None
        try:
            usec = int(self._watchdog_usec)
        except ValueError:
            return None
        return usec / _USEC_PER_SECOND / 2 if usec > 0 else None

    def _send(self, message: str) -> None:
        if self._address is None:
            return
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.sendto(message.encode(), self._address)
        except OSError as exc:
            if not self._failed:
                self._failed = True
                log.warning("cannot notify systemd (%s): %s", message.partition("=")[0], exc)
