"""Per-workflow log files: capture without limits on line length, bounded on disk, cheap to tail.

A workflow's stdout and stderr are copied byte-for-byte into ``<name>.log``;
when the file would exceed ``max_bytes`` it is rotated to ``<name>.log.1`` …
``.N``. The files together are one byte stream: a line cut by rotation (only a
line longer than the limit ever is) is rejoined by :func:`tail`, which reads
backwards from the end so that ``/tail`` on a 100 MB log costs one block read.
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from itertools import count
from pathlib import Path
from typing import BinaryIO

_CHUNK = 65536
_BLOCK = 65536
MARK_TAG = "supervisor:"
_MARK = re.compile(rf"^--- \S+ {MARK_TAG} (.*) ---$")
STARTING = "starting "  # the mark a run begins with


def _backup(path: Path, index: int) -> Path:
    return path.with_name(f"{path.name}.{index}")


class LogWriter:
    """Appends to ``path``, rotating by size into ``path.1`` … ``path.<backups>``.

    Rotation happens at the last line boundary that fits. A line longer than
    ``max_bytes`` is kept whole in one file as long as that file stays under
    ``2 * max_bytes``; beyond that (a workflow printing without newlines) it is
    split, so one runaway line can never fill the disk.
    """

    def __init__(self, path: Path, max_bytes: int, backups: int) -> None:
        if max_bytes <= 0 or backups < 0:
            raise ValueError("max_bytes must be > 0 and backups >= 0")
        self.path = path
        self._max = max_bytes
        self._backups = backups
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file: BinaryIO = path.open("ab")
        self._size = self._file.tell()
        self._mid_line = self._size > 0 and not _ends_with_newline(path)

    def write(self, data: bytes) -> None:
        while data:
            cut = self._fitting_cut(data)
            if cut:
                self._append(data[:cut])
                data = data[cut:]
            if data:
                self._rotate()
        self._file.flush()

    def mark(self, text: str) -> None:
        """Write a supervisor line (``--- <UTC time> supervisor: <text> ---``) between runs."""
        stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        prefix = "\n" if self._mid_line else ""
        self.write(f"{prefix}--- {stamp} {MARK_TAG} {text} ---\n".encode())

    def close(self) -> None:
        self._file.close()

    def _fitting_cut(self, data: bytes) -> int:
        """How many leading bytes of ``data`` go into the current file (0 = rotate first)."""
        room = self._max - self._size
        if len(data) <= room:
            return len(data)
        cut = data.rfind(b"\n", 0, max(room, 0)) + 1
        if cut or not (self._size == 0 or self._mid_line):
            return cut
        line_end = data.find(b"\n") + 1 or len(data)
        hard_room = 2 * self._max - self._size
        return min(line_end, hard_room) if hard_room > 0 else 0

    def _append(self, data: bytes) -> None:
        self._file.write(data)
        self._size += len(data)
        self._mid_line = not data.endswith(b"\n")

    def _rotate(self) -> None:
        self._file.close()
        if self._backups:
            for index in range(self._backups - 1, 0, -1):
                older = _backup(self.path, index)
                if older.exists():
                    os.replace(older, _backup(self.path, index + 1))
            os.replace(self.path, _backup(self.path, 1))
        self._file = self.path.open("wb")
        self._size = 0


def _ends_with_newline(path: Path) -> bool:
    with path.open("rb") as file:
        file.seek(-1, os.SEEK_END)
        return file.read(1) == b"\n"


async def pump(stream: asyncio.StreamReader, writer: LogWriter) -> None:
    """Copy a subprocess pipe into ``writer`` until EOF, in chunks (no line parsing)."""
    while chunk := await stream.read(_CHUNK):
        writer.write(chunk)


def _blocks_backwards(path: Path) -> Iterator[bytes]:
    """Blocks of the stream ``… path.2, path.1, path``, last block first."""
    for index in count():
        try:
            file = (_backup(path, index) if index else path).open("rb")
        except FileNotFoundError:
            return
        with file:
            position = file.seek(0, os.SEEK_END)
            while position > 0:
                size = min(_BLOCK, position)
                position -= size
                file.seek(position)
                yield file.read(size)


def output_tail(path: Path, lines: int, *, scan: int = 200) -> list[str]:
    """The last ``lines`` lines the latest run printed, the supervisor's marks left out.

    Stops at the mark that started the run, and looks back at most ``scan``
    lines, so an earlier run's output is never shown as this one's.
    """
    own: list[str] = []
    for line in reversed(tail(path, scan)):
        mark = _MARK.match(line)
        if mark and mark.group(1).startswith(STARTING):
            break
        if not mark:
            own.append(line)  # newest first
    return own[:lines][::-1]


def last_bytes(path: Path, limit: int) -> bytes:
    """The last ``limit`` bytes of the log stream (rotated files too), from a line start."""
    blocks: list[bytes] = []
    size = 0
    for block in _blocks_backwards(path):
        blocks.append(block)
        size += len(block)
        if size > limit:
            break
    data = b"".join(reversed(blocks))
    if len(data) <= limit:
        return data
    data = data[-limit:]
    newline = data.find(b"\n")
    return data[newline + 1 :] if 0 <= newline < len(data) - 1 else data


def tail(path: Path, lines: int) -> list[str]:
    """The last ``lines`` lines of the log (oldest first), continuing into rotated files."""
    if lines <= 0:
        return []
    blocks: list[bytes] = []
    newlines = 0
    complete = False
    for block in _blocks_backwards(path):
        blocks.append(block)
        newlines += block.count(b"\n")
        if newlines > lines:
            complete = True
            break
    data = b"".join(reversed(blocks))
    if not data:
        return []
    parts = data.removesuffix(b"\n").split(b"\n")
    if complete:
        parts = parts[1:]
    return [part.decode("utf-8", errors="replace").removesuffix("\r") for part in parts[-lines:]]
