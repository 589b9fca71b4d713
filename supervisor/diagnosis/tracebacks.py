"""Python tracebacks found in a log, and the fingerprint of a failure.

The fingerprint (``signature``) must be equal for the same failure on every
run and differ between failures, so it keeps what identifies the code path
(the exception type, each frame's file name and function) and drops what
changes from run to run (line numbers, addresses, ids, the message).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import PurePath

_START = re.compile(r"Traceback \(most recent call last\):\s*$")
_FRAME = re.compile(r'^\s*File "(?P<file>[^"]+)", line (?P<line>\d+), in (?P<func>\S+)')
_EXCEPTION = re.compile(r"^(?P<type>[A-Za-z_][\w.]*)(?::\s?(?P<message>.*))?$")


@dataclass(frozen=True, slots=True)
class Frame:
    file: str  # as printed: absolute, or relative to the process's cwd
    line: int
    function: str


@dataclass(frozen=True, slots=True)
class Traceback:
    """One traceback: where it sits in the lines it was found in, its frames, its exception."""

    start: int  # index of the "Traceback (most recent call last):" line
    end: int  # index of the exception line
    frames: tuple[Frame, ...]
    exception: str  # the type's last dotted part: "KeyError"
    message: str

    @property
    def signature(self) -> str:
        path = ">".join(f"{PurePath(f.file).name}:{f.function}" for f in self.frames)
        return f"{self.exception}@{path}"


def find_tracebacks(lines: Sequence[str]) -> list[Traceback]:
    """Every complete traceback in ``lines``, oldest first."""
    found: list[Traceback] = []
    index = 0
    while index < len(lines):
        if _START.search(lines[index]):
            parsed = _parse(lines, index)
            if parsed is not None:
                found.append(parsed)
                index = parsed.end
        index += 1
    return found


def _parse(lines: Sequence[str], start: int) -> Traceback | None:
    frames: list[Frame] = []
    for index in range(start + 1, len(lines)):
        line = lines[index]
        frame = _FRAME.match(line)
        if frame:
            frames.append(Frame(frame["file"], int(frame["line"]), frame["func"]))
        elif _START.search(line):
            return None  # a new traceback began before this one named its exception
        elif line[:1] not in (" ", "\t", ""):
            exception = _EXCEPTION.match(line)
            if exception is None:
                return None
            kind = exception["type"].rsplit(".", 1)[-1]
            return Traceback(start, index, tuple(frames), kind, exception["message"] or "")
    return None


def process_signature(*, signal: str | None, exit_code: int | None, hung: bool) -> str:
    """The fingerprint of a failure that left no traceback."""
    if hung:
        return "hang"
    if signal:
        return f"signal:{signal}"
    if exit_code is not None:
        return f"exit:{exit_code}"
    return "unknown"
