"""Heartbeats as a file's mtime (``WORKFLOW_HEARTBEAT_FILE``), beside the state table's key.

A heartbeat written to the state table every second is a write the supervisor
must read at once, since nothing outside the table tells it from an error. So
each process it starts is named a file, in a directory no watch covers, and
touching it is a heartbeat that costs the supervisor nothing until it looks:
a hang check, ``/status``, a start waiting for its first beat. The workflow
library beats this way whenever it is given the file.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path


def beat_file(run_dir: Path, name: str) -> Path:
    return run_dir / "beats" / name


def prepare(path: Path) -> None:
    """Before a start: the directory exists, and no beat is left from an earlier run."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)


def last_beat(path: Path) -> datetime | None:
    """When the file was last touched; None while it was never touched (or is unreadable)."""
    try:
        touched = os.stat(path).st_mtime_ns
    except OSError:
        return None
    return datetime.fromtimestamp(touched / 1e9, UTC)


def later(one: datetime | None, other: datetime | None) -> datetime | None:
    """The later of two heartbeats, either of which may be missing."""
    if one is None or other is None:
        return one or other
    return max(one, other)
