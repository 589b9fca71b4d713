"""A file change an agent proposes: planned in memory, shown as a diff, applied only when allowed.

Every backend goes through here, so the rule is in one place: the path must
resolve inside the workflow's ``cwd`` (symlinks followed), must not be a file
the secrets rule denies (``supervisor.secrets.readable``), and the change is
computed before anything is written, so the diff a person approves is the
change that is made. ``apply`` refuses when the file changed since the plan
(a stale approval must not overwrite newer work).

Heal builds on the same plan with its own path globs and size gates.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path

from supervisor.agent.types import ActionKind, Proposal
from supervisor.secrets import REDACTED, readable

MAX_FILE_BYTES = 256 * 1024
DIFF_CONTEXT = 3


class ChangeRefused(Exception):
    """A change that may not be made at all; the text says why, for the agent to read."""


@dataclass(frozen=True, slots=True)
class FileChange:
    """A whole-file change: ``before`` (None for a new file) becomes ``after``."""

    path: Path  # absolute, inside cwd
    relative: str  # as the person reads it
    before: str | None
    after: str

    @property
    def diff(self) -> str:
        return unified_diff(self.before, self.after, self.relative)

    @property
    def counts(self) -> tuple[int, int]:
        """Lines added and removed."""
        lines = self.diff.splitlines()[2:]  # past the ---/+++ header
        added = sum(1 for line in lines if line.startswith("+"))
        return added, sum(1 for line in lines if line.startswith("-"))

    def proposal(self, workflow: str) -> Proposal:
        kind: ActionKind = "write" if self.before is None else "edit"
        return Proposal(workflow, kind, self.relative, self.diff)

    def apply(self) -> None:
        """Write ``after``; refused if the file is no longer what the plan saw, or where."""
        if self.path.resolve() != self.path:
            raise ChangeRefused(f"{self.relative} is now a link; propose the change again")
        current = _read(self.path) if self.path.exists() else None
        if current != self.before:
            raise ChangeRefused(f"{self.relative} changed since the change was proposed")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(self.after, encoding="utf-8")


def plan_edit(
    cwd: Path, file_path: str, old: str, new: str, *, replace_all: bool = False
) -> FileChange:
    """Replace ``old`` by ``new`` in ``file_path`` (exactly once unless ``replace_all``)."""
    path, relative = confined(cwd, file_path)
    if not path.is_file():
        raise ChangeRefused(f"{relative}: no such file (use write to create one)")
    before = _read(path)
    count = before.count(old) if old else 0
    if count == 0:
        raise ChangeRefused(f"{relative}: the text to replace was not found")
    if count > 1 and not replace_all:
        raise ChangeRefused(f"{relative}: the text to replace appears {count} times; be unique")
    after = before.replace(old, new) if replace_all else before.replace(old, new, 1)
    return FileChange(path, relative, before, _unredacted(after, before, relative))


def plan_write(cwd: Path, file_path: str, content: str) -> FileChange:
    """Write ``content`` to ``file_path``, creating it or replacing it whole."""
    path, relative = confined(cwd, file_path)
    if path.exists() and not path.is_file():
        raise ChangeRefused(f"{relative}: not a regular file")
    before = _read(path) if path.exists() else None
    return FileChange(path, relative, before, _unredacted(content, before, relative))


def _unredacted(after: str, before: str | None, relative: str) -> str:
    """Refuse to write the redaction mark: the agent saw a secret blanked, and must not
    replace the real value with the mark."""
    if after.count(REDACTED) > (before or "").count(REDACTED):
        raise ChangeRefused(
            f"{relative}: the change writes {REDACTED}, a secret blanked in what you read; "
            "leave the lines that hold secrets as they are"
        )
    return after


def confined(cwd: Path, file_path: str) -> tuple[Path, str]:
    """``file_path`` resolved inside ``cwd``, and relative to it; refused outside or if secret."""
    root = cwd.resolve()
    path = (root / file_path).resolve()
    if not path.is_relative_to(root):
        raise ChangeRefused(f"{file_path}: outside the workflow's directory")
    if not readable(path, root=root):
        raise ChangeRefused(f"{file_path}: may hold secrets and is never touched")
    return path, str(path.relative_to(root))


def unified_diff(before: str | None, after: str, name: str) -> str:
    """The change as a unified diff (``/dev/null`` for a new file)."""
    old_name = "/dev/null" if before is None else f"a/{name}"
    lines = difflib.unified_diff(
        (before or "").splitlines(keepends=True),
        after.splitlines(keepends=True),
        fromfile=old_name,
        tofile=f"b/{name}",
        n=DIFF_CONTEXT,
    )
    return "".join(line if line.endswith("\n") else line + "\n" for line in lines)


def _read(path: Path) -> str:
    if path.stat().st_size > MAX_FILE_BYTES:
        raise ChangeRefused(f"{path.name} is larger than {MAX_FILE_BYTES // 1024} KB")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ChangeRefused(f"{path.name} is not UTF-8 text") from exc
