"""Every git operation heal needs, as blocking calls to the ``git`` command (run them in a thread).

Each call runs ``git`` with a clean environment (no ``GIT_*`` variable of
the caller's leaks in, so a ``GIT_DIR`` set for something else cannot
point it at another repository; ``GIT_TERMINAL_PROMPT=0``, so nothing
waits for a password) and with the settings that would change its output
or make it block overridden on the command line (colour, external diff
drivers, prefixes, commit signing). A commit is made as ``heal`` with the
person who approved it in an ``Approved-by:`` trailer, so no identity need
be configured. Every failure is a ``GitError`` whose message is one line:
the command and git's stderr.

What it does not promise:

- atomicity against someone else using the live repository at the same
  instant: ``fast_forward`` checks the base and the live tree, then moves
  the branch, and a commit landing in between is refused by git itself
  (``--ff-only``) but an edit made in between is git's to judge;
- that the repository's hooks run when heal commits (the commit and the
  revert run none: the gates are the proof, and a rollback must not be
  blocked by a failing hook); the live tree's merge and checkout hooks do run;
- paths that are not valid UTF-8 survive intact: output is decoded with
  replacement characters.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path

from supervisor.heal.types import FileStat, FileStatus, Patch, Worktree

IDENTITY = ("-c", "user.name=heal", "-c", "user.email=heal@agent-control-plane.invalid")
# For the commands that make a commit: no hook (prepare-commit-msg runs even with --no-verify).
_NO_HOOKS = ("-c", "core.hooksPath=/dev/null")
# Settings a user's config may hold that would change output or make a command block.
_OVERRIDES = (
    "-c",
    "color.ui=never",
    "-c",
    "core.quotePath=false",
    "-c",
    "diff.noprefix=false",
    "-c",
    "diff.mnemonicPrefix=false",
    "-c",
    "commit.gpgSign=false",
    "-c",
    "advice.detachedHead=false",
)
TIMEOUT_SECONDS = 120.0  # no local git operation heal makes should take this long
BRANCH_PREFIX = "heal"
STAMP = "%Y%m%d-%H%M%S"
_ERROR_CHARS = 300
_STATUS: dict[str, FileStatus] = {
    "A": "added",
    "M": "modified",
    "T": "modified",  # a type change (file to symlink) is shown as a modification
    "D": "deleted",
    "R": "renamed",
}


class GitError(Exception):
    """A git command failed; the message names it and quotes git's stderr, in one line."""


def _environment() -> dict[str, str]:
    """The caller's environment without ``GIT_*``, so git sees only the repository it is given."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("GIT_")}
    env["GIT_TERMINAL_PROMPT"] = "0"
    return env


def _one_line(text: str) -> str:
    joined = " ".join(line.strip() for line in text.splitlines() if line.strip())
    return joined if len(joined) <= _ERROR_CHARS else joined[: _ERROR_CHARS - 1] + "…"


def _run(
    cwd: Path, *args: str, commits: bool = False, stdin: str | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run ``git args`` in ``cwd``; a ``GitError`` when it fails (``check``) or cannot start."""
    argv = ["git", *_OVERRIDES, *((*IDENTITY, *_NO_HOOKS) if commits else ()), *args]
    shown = "git " + " ".join(args)
    if not cwd.is_dir():
        raise GitError(f"{shown}: {cwd} is not a directory")
    try:
        done = subprocess.run(
            argv,
            cwd=cwd,
            env=_environment(),
            input=stdin,
            stdin=None if stdin is not None else subprocess.DEVNULL,
            capture_output=True,
            text=True,
            encoding="utf-8",
            errors="replace",
            timeout=TIMEOUT_SECONDS,
            check=False,
        )
    except FileNotFoundError as exc:
        raise GitError(f"{shown}: cannot run git: {exc.strerror or exc}") from exc
    except subprocess.TimeoutExpired as exc:
        raise GitError(f"{shown}: no answer within {TIMEOUT_SECONDS:.0f}s") from exc
    if check and done.returncode != 0:
        said = _one_line(done.stderr) or _one_line(done.stdout) or f"exit {done.returncode}"
        raise GitError(f"{shown}: {said}")
    return done


def _out(cwd: Path, *args: str) -> str:
    return _run(cwd, *args).stdout.strip()


# -- reading ----------------------------------------------------------------------------------


def repo_root(path: Path) -> Path | None:
    """The root of the repository containing ``path``; None if there is none or no git."""
    where = path if path.is_dir() else path.parent
    if not where.is_dir():
        return None
    try:
        top = _out(where, "rev-parse", "--show-toplevel")
    except GitError:
        return None
    return Path(top).resolve() if top else None


def head(repo: Path) -> str:
    """The full sha ``HEAD`` of ``repo`` is at."""
    return _out(repo, "rev-parse", "--verify", "HEAD^{commit}")


def current_branch(repo: Path) -> str | None:
    """The branch checked out in ``repo``; None on a detached ``HEAD``."""
    done = _run(repo, "symbolic-ref", "--quiet", "--short", "HEAD", check=False)
    if done.returncode == 0:
        return done.stdout.strip() or None
    if done.returncode == 1:  # not a symbolic ref: detached
        return None
    raise GitError(f"git symbolic-ref HEAD: {_one_line(done.stderr) or done.returncode}")


def file_at(repo: Path, commit: str, path: str) -> str | None:
    """The text of ``path`` at ``commit``; None when that commit has no such file."""
    done = _run(repo, "show", f"{commit}:{path}", check=False)
    return done.stdout if done.returncode == 0 else None


def is_stale(worktree: Worktree) -> bool:
    """Whether the live ``HEAD`` moved away from the worktree's base (or cannot be read)."""
    try:
        return head(worktree.repo) != worktree.base
    except GitError:
        return True  # a live repository that is gone or broken cannot take the fix either


# -- the worktree -----------------------------------------------------------------------------


def _ref_part(name: str) -> str:
    """``name`` made safe as one component of a branch name (workflow names may hold dots)."""
    part = re.sub(r"\.{2,}", "-", name).rstrip(".")
    return part[: -len(".lock")] + "-lock" if part.endswith(".lock") else part


def _branch_exists(repo: Path, branch: str) -> bool:
    done = _run(repo, "rev-parse", "--verify", "--quiet", f"refs/heads/{branch}", check=False)
    return done.returncode == 0


def make_worktree(repo: Path, workflow: str, base: str, *, into: Path, now: datetime) -> Worktree:
    """A new ``heal/<workflow>/<UTC time>`` branch at ``base``, checked out under ``into``.

    The directory is ``into/<workflow>-<time>``; a second proposal in the same
    second gets ``-2`` (then ``-3``...) on both, so none overwrites another.
    """
    root = repo_root(repo)
    if root is None:
        raise GitError(f"git rev-parse --show-toplevel: {repo} is not a git repository")
    sha = _out(root, "rev-parse", "--verify", f"{base}^{{commit}}")
    live = current_branch(root)
    stamp = now.astimezone(UTC).strftime(STAMP)
    into.mkdir(parents=True, exist_ok=True)
    into = into.resolve()
    for attempt in range(1, 1000):
        suffix = "" if attempt == 1 else f"-{attempt}"
        branch = f"{BRANCH_PREFIX}/{_ref_part(workflow)}/{stamp}{suffix}"
        path = into / f"{workflow}-{stamp}{suffix}"
        if _branch_exists(root, branch) or path.exists():
            continue
        try:
            _run(root, "worktree", "add", "--quiet", "-b", branch, str(path), sha)
        except GitError:
            if _branch_exists(root, branch) or path.exists():
                continue  # another proposal took the name between the look and the add
            raise
        return Worktree(repo=root, path=path, branch=branch, base=sha, live_branch=live)
    raise GitError(f"git worktree add: no free name for heal/{workflow}/{stamp}")


def _stage(worktree: Worktree) -> None:
    _run(worktree.path, "add", "-A")


def _split_z(text: str) -> list[str]:
    fields = text.split("\0")
    return fields[:-1] if fields and fields[-1] == "" else fields


def _numstat(worktree: Worktree) -> dict[str, tuple[int, int]]:
    """Added and removed lines by (new) path; a binary file counts as none."""
    fields = _split_z(
        _out(worktree.path, "diff", "--cached", "-M", "--numstat", "-z", worktree.base)
    )
    counts: dict[str, tuple[int, int]] = {}
    index = 0
    while index < len(fields):
        added, removed, path = fields[index].split("\t", 2)
        index += 1
        if not path:  # a rename: the old and new paths follow as their own fields
            path = fields[index + 1]
            index += 2
        counts[path] = (
            int(added) if added.isdigit() else 0,
            int(removed) if removed.isdigit() else 0,
        )
    return counts


def _name_status(worktree: Worktree) -> list[tuple[FileStatus, str, str | None]]:
    """(status, path, old path) per file."""
    fields = _split_z(
        _out(worktree.path, "diff", "--cached", "-M", "--name-status", "-z", worktree.base)
    )
    found: list[tuple[FileStatus, str, str | None]] = []
    index = 0
    while index < len(fields):
        letter = fields[index][:1]
        if letter in ("R", "C"):
            old, new = fields[index + 1], fields[index + 2]
            found.append(
                ("renamed" if letter == "R" else "added", new, old if letter == "R" else None)
            )
            index += 3
        else:
            found.append((_STATUS.get(letter, "modified"), fields[index + 1], None))
            index += 2
    return found


def patch(worktree: Worktree) -> Patch:
    """What the worktree changes against its base, new untracked files included.

    Stages everything (``git add -A``; ignored files stay out), so ``commit``
    later records exactly this diff, not files a check or smoke run leaves.
    """
    _stage(worktree)
    diff = _run(
        worktree.path, "diff", "--cached", "-M", "--no-ext-diff", "--no-textconv", worktree.base
    ).stdout
    counts = _numstat(worktree)
    files = tuple(
        FileStat(path, status, *counts.get(path, (0, 0)), old_path=old)
        for status, path, old in _name_status(worktree)
    )
    return Patch(base=worktree.base, diff=diff, files=files)


def commit(worktree: Worktree, message: str, *, author: str) -> str:
    """Commit the worktree's change on its branch, with ``Approved-by: <author>``; the sha.

    What is committed is what ``patch`` staged, the diff the person approved;
    only when nothing is staged (``patch`` never ran) is the whole working
    tree taken. Files that appeared later (a check's caches) stay out.
    """
    if _run(worktree.path, "diff", "--cached", "--quiet", check=False).returncode == 0:
        _stage(worktree)
    who = _one_line(author) or "unknown"
    text = f"{message.rstrip()}\n\nApproved-by: {who}\n"
    _run(
        worktree.path,
        "commit",
        "--quiet",
        "--no-verify",
        "--cleanup=whitespace",
        "-F",
        "-",
        commits=True,
        stdin=text,
    )
    return head(worktree.path)


def _touched(repo: Path, base: str, commit: str) -> set[str]:
    """Every path the commits from ``base`` to ``commit`` touch, both sides of a rename."""
    listed = _out(repo, "diff", "--name-only", "--no-renames", "-z", base, commit)
    return set(_split_z(listed))


def _dirty(repo: Path) -> set[str]:
    """Paths the live working tree or index differ on, untracked files included."""
    fields = _split_z(_run(repo, "status", "--porcelain=v1", "-z", "--untracked-files=all").stdout)
    paths: set[str] = set()
    index = 0
    while index < len(fields):
        entry = fields[index]
        paths.add(entry[3:])
        index += 1
        if entry[:1] in ("R", "C") or entry[1:2] in ("R", "C"):  # the origin follows
            paths.add(fields[index])
            index += 1
    return paths


def fast_forward(worktree: Worktree, commit: str) -> str:
    """Move the live branch (or detached ``HEAD``) to ``commit``; the previous ``HEAD``.

    Refused when the live ``HEAD`` left the base (stale), when the live tree
    has another branch checked out than the one recorded, or when the live
    tree has uncommitted changes to a file the commit touches: those would be
    lost or mixed in. Changes to other files are carried along untouched.
    """
    repo = worktree.repo
    previous = head(repo)
    if previous != worktree.base:
        raise GitError(
            f"git merge --ff-only: stale: the live HEAD is {previous[:10]}, "
            f"not the base {worktree.base[:10]}"
        )
    ancestor = _run(repo, "merge-base", "--is-ancestor", worktree.base, commit, check=False)
    if ancestor.returncode != 0:
        raise GitError(f"git merge --ff-only {commit}: not a descendant of the base")
    branch = current_branch(repo)
    if worktree.live_branch is not None and branch != worktree.live_branch:
        raise GitError(
            f"git merge --ff-only: the live tree is on {branch or 'a detached HEAD'}, "
            f"not {worktree.live_branch}"
        )
    clash = sorted(_touched(repo, worktree.base, commit) & _dirty(repo))
    if clash:
        raise GitError(
            f"git merge --ff-only: the live tree has local changes to {', '.join(clash[:3])}"
            + (f" and {len(clash) - 3} more" if len(clash) > 3 else "")
        )
    if branch is None:
        _run(repo, "checkout", "--quiet", "--detach", commit)
    else:
        _run(repo, "merge", "--quiet", "--ff-only", commit)
    return previous


def revert(repo: Path, commit: str, *, author: str, reason: str) -> str:
    """Undo ``commit`` with a new commit in the live repository saying why; its sha.

    A revert that conflicts (the code moved on) is aborted, leaving the tree
    as it was, and raised as a ``GitError``.
    """
    done = _run(repo, "revert", "--no-edit", commit, commits=True, check=False)
    if done.returncode != 0:
        _run(repo, "revert", "--abort", check=False)  # nothing to abort when it never started
        said = _one_line(done.stderr) or _one_line(done.stdout) or f"exit {done.returncode}"
        raise GitError(f"git revert --no-edit {commit}: {said}")
    message = _out(repo, "log", "-1", "--format=%B")
    text = f"{message.rstrip()}\n\nReason: {_one_line(reason)}\nReverted-by: {_one_line(author)}\n"
    _run(
        repo,
        "commit",
        "--quiet",
        "--amend",
        "--only",
        "--no-verify",
        "--cleanup=whitespace",
        "-F",
        "-",
        commits=True,
        stdin=text,
    )
    return head(repo)


def remove_worktree(worktree: Worktree, *, delete_branch: bool) -> None:
    """Remove the worktree's directory, and its branch when asked; either may be gone already."""
    repo = worktree.repo
    if not repo.is_dir():
        shutil.rmtree(worktree.path, ignore_errors=True)
        return
    if worktree.path.exists():
        done = _run(
            repo, "worktree", "remove", "--force", "--force", str(worktree.path), check=False
        )
        if done.returncode != 0:  # not (or no longer) a registered worktree: a plain directory
            shutil.rmtree(worktree.path, ignore_errors=True)
    _run(repo, "worktree", "prune", check=False)
    if delete_branch and _branch_exists(repo, worktree.branch):
        _run(repo, "branch", "--quiet", "-D", worktree.branch)
