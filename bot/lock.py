"""One bot per data dir: a second copy would double every alert and fight over workflows.

The guard is an exclusive ``flock`` on ``<data_dir>/bot.lock``. The kernel
drops the lock when the holding process exits in any way, ``kill -9`` and
OOM-kills included, so there is never a stale lock to clean up and the file is
deliberately left in place (deleting it would let two processes lock two
different inodes). Python opens files non-inheritable, so workflows spawned by
the bot do not keep the lock alive after the bot dies.

The file records who holds it so the refusal can say so; it carries a
fingerprint of the token, never the token itself.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType

LOCK_NAME = "bot.lock"


def token_fingerprint(token: str) -> str:
    """First 12 hex digits of the token's SHA-256: tells bots apart, reveals nothing."""
    return hashlib.sha256(token.encode()).hexdigest()[:12]


class AlreadyRunning(Exception):
    """Another live process holds the lock on this data dir."""


class InstanceLock:
    """Exclusive, crash-safe ownership of a data dir by one bot process."""

    def __init__(self, data_dir: Path, token: str) -> None:
        self.path = Path(data_dir) / LOCK_NAME
        self._fingerprint = token_fingerprint(token)
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock or raise ``AlreadyRunning`` naming the holder."""
        if self._fd is not None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise AlreadyRunning(_refusal(holder)) from None
        self._fd = fd
        _write_holder(fd, self._fingerprint)

    def release(self) -> None:
        """Give the lock up (closing the descriptor unlocks it)."""
        if self._fd is None:
            return
        os.ftruncate(self._fd, 0)
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> InstanceLock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


def _write_holder(fd: int, fingerprint: str) -> None:
    record = {
        "pid": os.getpid(),
        "token_fingerprint": fingerprint,
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(record).encode(), 0)


def _read_holder(fd: int) -> dict[str, object]:
    """What the holder wrote; empty if it has not written yet or the file is garbled."""
    try:
        data = json.loads(os.pread(fd, 4096, 0) or b"{}")
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _refusal(holder: dict[str, object]) -> str:
    pid = holder.get("pid", "?")
    fingerprint = holder.get("token_fingerprint", "?")
    since = holder.get("started_at", "?")
    return (
        f"another bot is already running on this data dir (pid {pid}, token …{fingerprint}, "
        f"since {since}); stop it first or set SUPERVISOR_DATA_DIR"
    )
