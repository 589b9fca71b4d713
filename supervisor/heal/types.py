"""The values heal is made of, shared by its pieces (git, gates, smoke run, the healer)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

FileStatus = Literal["added", "modified", "deleted", "renamed"]


@dataclass(frozen=True, slots=True)
class FileStat:
    """One file a patch touches, as ``git diff --numstat -M`` and ``--name-status`` see it."""

    path: str  # relative to the repository root; for a rename, the new path
    status: FileStatus
    added: int
    removed: int
    old_path: str | None = None  # for a rename


@dataclass(frozen=True, slots=True)
class Patch:
    """What a proposal changes, against its base commit."""

    base: str  # the commit the workflow runs (full sha)
    diff: str  # ``git diff`` unified text
    files: tuple[FileStat, ...]

    @property
    def added(self) -> int:
        return sum(stat.added for stat in self.files)

    @property
    def removed(self) -> int:
        return sum(stat.removed for stat in self.files)


@dataclass(frozen=True, slots=True)
class GateResult:
    """One gate's verdict, stored and shown: ``detail`` says what it saw, in a line."""

    name: str  # "paths", "size", "tests", "state keys", "compiles", "check", "smoke", "base"
    passed: bool
    detail: str = ""


@dataclass(frozen=True, slots=True)
class HealPolicy:
    """A workflow's heal settings (its TOML keys), resolved."""

    mode: Literal["off", "propose", "auto"] = "off"
    paths: tuple[str, ...] = ()  # globs relative to the repository root
    max_files: int = 3
    max_lines: int = 80
    check_command: tuple[str, ...] = ()  # argv, run in the worktree; empty: none
    check_timeout_seconds: float = 300.0
    smoke_seconds: float = 60.0
    probation_seconds: float = 600.0


@dataclass(frozen=True, slots=True)
class Worktree:
    """A separate checkout of the workflow's repository on a heal branch."""

    repo: Path  # the live repository's root
    path: Path  # the worktree's directory
    branch: str  # heal/<workflow>/<time>
    base: str  # the commit it was made from
    live_branch: str | None = None  # the branch the live tree had checked out (None: detached)
    extra: dict[str, str] = field(default_factory=dict)
