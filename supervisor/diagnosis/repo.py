"""What git knows about a workflow's ``cwd``: its version, its last commits, what changed.

``git`` runs as a subprocess with a timeout (no dependency, and a stuck
``git`` costs one diagnosis a few seconds, never the supervisor). It only
reads: ``GIT_OPTIONAL_LOCKS=0`` keeps even ``git diff`` from refreshing the
index under a workflow that may be committing. Paths are limited to ``cwd``
(``--relative``) and deny-listed files are left out of every diff.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from datetime import datetime
from pathlib import Path

from supervisor.secrets import readable

GIT_TIMEOUT = 5.0


def _git(cwd: Path, *args: str, timeout: float) -> str | None:
    """``git args`` in ``cwd``: its output, or None when git is missing, fails or hangs."""
    try:
        done = subprocess.run(
            ["git", "-c", "core.quotepath=off", *args],
            cwd=cwd,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=timeout,
            env={**os.environ, "GIT_OPTIONAL_LOCKS": "0", "GIT_TERMINAL_PROMPT": "0"},
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


def version(cwd: Path, *, timeout: float = GIT_TIMEOUT) -> str | None:
    """HEAD, with a digest of the uncommitted diff when there is one (edits change it too)."""
    head = _git(cwd, "rev-parse", "HEAD", timeout=timeout)
    if head is None:
        return None
    dirty = _git(cwd, "diff", "HEAD", "--relative", timeout=timeout) or ""
    suffix = f"+{hashlib.sha256(dirty.encode()).hexdigest()[:12]}" if dirty else ""
    return head.strip() + suffix


def recent_commits(cwd: Path, count: int = 5, *, timeout: float = GIT_TIMEOUT) -> str | None:
    """The last ``count`` commits, one line each: short id, ISO date, author, subject."""
    out = _git(cwd, "log", f"-n{count}", "--format=%h %aI %an: %s", "--no-color", timeout=timeout)
    return _nonempty(out)


def diff_since(cwd: Path, when: datetime | None, *, timeout: float = GIT_TIMEOUT) -> str | None:
    """What changed under ``cwd`` since the commit current at ``when`` (HEAD without one).

    Includes uncommitted edits: a workflow is often fixed, or broken, in
    place. Deny-listed files are left out by name, so no secret is read.
    """
    base = "HEAD"
    if when is not None:
        found = _git(cwd, "rev-list", "-1", f"--before={when.isoformat()}", "HEAD", timeout=timeout)
        base = found.strip() if found and found.strip() else "HEAD"
    names = _git(cwd, "diff", "--relative", "--name-only", base, "--", timeout=timeout)
    if names is None:
        return None
    files = [name for name in names.splitlines() if name and readable(cwd / name, root=cwd)]
    if not files:
        return None
    diff = _git(cwd, "diff", "--relative", "--no-color", base, "--", *files, timeout=timeout)
    return _nonempty(diff)


def _nonempty(out: str | None) -> str | None:
    return out.strip() or None if out else None
