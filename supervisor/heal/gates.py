"""The code gates a proposed fix must pass before anyone may apply it, each a ``GateResult``.

``run_static_gates`` runs them in order: "paths" (only files ``heal_paths``
allows, never a secrets file), "size" (``heal_max_files``,
``heal_max_lines``), "tests" (no test deleted, renamed or skipped, no
exception swallowed), "state keys" (the workflow still writes its state),
"compiles" (every changed ``.py`` file) and "check" (``heal_check_command``
in the worktree). ``check_base`` is the last word before the proposal is
shown: the live tree is still at the base. The smoke run is ``smoke``'s.
Every detail is one short line, for a phone.

What it does not promise:

- that a fix is right: the gates refuse known ways of cheating (a skipped
  test, a swallowed exception, a dropped heartbeat) and changes out of
  bounds, not wrong logic; patterns are matched line by line, so a skip
  built at run time, or split over two lines, gets through;
- that "compiles" uses the workflow's interpreter: the source is compiled by
  the supervisor's Python (3.11+), so syntax only a newer version accepts is
  refused, and nothing is imported; TypeScript is left to the check command;
- "state keys" reads the text, not the behaviour: a script that still names
  the keys but never reaches the write passes, and so does any script that
  imports the ``workflows`` library;
- isolation of the check command: it runs the patched code with the
  supervisor's environment (minus every variable named like a secret and
  every ``GIT_*``) and can reach what that user can.
"""

from __future__ import annotations

import contextlib
import fnmatch
import os
import re
import signal
import subprocess
import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from supervisor.heal import git
from supervisor.heal.types import FileStat, GateResult, HealPolicy, Patch, Worktree
from supervisor.secrets import readable
from workflows.contract import HEARTBEAT_KEY, STATUS_KEY, SUMMARY_KEY

STATE_KEYS = (STATUS_KEY, HEARTBEAT_KEY, SUMMARY_KEY)
TAIL_LINES = 5
TAIL_BYTES = 16_384
DETAIL_CHARS = 300
KILL_WAIT_SECONDS = 5.0  # after SIGKILL, for the kernel to reap the check's leader
NOT_RUN = "not run: an earlier gate refused the change"
MINUS = "−"  # U+2212, as the proposal's headline shows it

SCRIPT_SUFFIXES = frozenset({".py", ".ts", ".tsx"})
TS_SUFFIXES = frozenset({".ts", ".tsx"})
_TEST_NAME = re.compile(
    r"^(test_.*\.py|.*_test\.py|conftest\.py|.*\.(test|spec)\.(ts|tsx|js|jsx|mjs|cjs))$"
)
_TEST_DIRS = frozenset({"tests", "__tests__"})
_SKIPS = (
    (re.compile(r"pytest\.mark\.(skip|xfail)"), "a pytest skip/xfail mark"),
    (re.compile(r"pytest\.(skip|xfail)\s*\("), "a pytest skip/xfail call"),
    (re.compile(r"unittest\.skip"), "a unittest skip"),
    (re.compile(r"@skip"), "a @skip"),
    (re.compile(r"\b(it|test|describe)\.skip\s*\("), "a .skip("),
    (re.compile(r"\bx(it|describe|test)\s*\("), "an xit("),
    (re.compile(r"\.only\s*\("), "an .only("),
)
_EXCEPT = re.compile(r"^\s*except\b[^#]*:\s*(#.*)?$")
_EXCEPT_PASS = re.compile(r"^\s*except\b[^#]*:\s*(pass|\.\.\.)\s*;?\s*(#.*)?$")
_PASS = re.compile(r"^\s*(pass|\.\.\.)\s*;?\s*(#.*)?$")
_IMPORTS_LIBRARY = re.compile(r"^\s*(from\s+workflows\b|import\s+workflows\b)", re.MULTILINE)
_SECRET_VARIABLE = re.compile(r"secret|token|key|passw|credential", re.IGNORECASE)
_HUNK = re.compile(r"^@@ -\d+(?:,(\d+))? \+(\d+)(?:,(\d+))? @@")


# -- globs ------------------------------------------------------------------------------------


def _match_parts(parts: Sequence[str], globs: Sequence[str]) -> bool:
    if not globs:
        return not parts
    first, rest = globs[0], globs[1:]
    if first == "**":
        return any(_match_parts(parts[index:], rest) for index in range(len(parts) + 1))
    return bool(parts) and fnmatch.fnmatchcase(parts[0], first) and _match_parts(parts[1:], rest)


def glob_matches(path: str, glob: str) -> bool:
    """Whether a repository-relative ``path`` matches ``glob``, ``PurePath.full_match`` style.

    ``**`` as a whole segment matches any number of directories (none
    included); ``*``, ``?`` and ``[...]`` match within one segment, case
    sensitively. The same code runs on 3.11 and 3.13, so a glob means one thing.
    """
    globs = [part for part in glob.removeprefix("./").split("/") if part not in ("", ".")]
    parts = [part for part in path.removeprefix("./").split("/") if part not in ("", ".")]
    return bool(globs) and _match_parts(parts, globs)


def matches(path: str, globs: Sequence[str]) -> bool:
    """Whether the repository-relative ``path`` matches one of ``globs``."""
    return any(glob_matches(path, glob) for glob in globs)


def is_test_file(path: str) -> bool:
    """Whether ``path`` is a test: by its name, or by a ``tests``/``__tests__`` directory."""
    pure = PurePosixPath(path)
    return bool(_TEST_NAME.match(pure.name)) or any(p in _TEST_DIRS for p in pure.parts[:-1])


def changed_paths(files: Sequence[FileStat]) -> list[str]:
    """Every path a patch names, a rename's old path included."""
    return [p for stat in files for p in (stat.path, stat.old_path) if p is not None]


# -- the diff, read per file ------------------------------------------------------------------


@dataclass
class FileDiff:
    """One file's hunks: added lines with their new line numbers, removed lines, new-side runs."""

    path: str
    added: list[tuple[int, str]] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    # Per hunk, the new file's lines in order: (added?, line number, text).
    runs: list[list[tuple[bool, int, str]]] = field(default_factory=list)


_ESCAPES = {"a": 7, "b": 8, "t": 9, "n": 10, "v": 11, "f": 12, "r": 13, '"': 34, "\\": 92}


def _unquote(quoted: str) -> str:
    """A path git C-quoted (a tab, a quote, a newline, or octal bytes in it)."""
    raw, out, index = quoted.encode("utf-8", "surrogateescape"), bytearray(), 0
    while index < len(raw):
        byte = raw[index]
        index += 1
        if byte != 92 or index >= len(raw):  # not a backslash
            out.append(byte)
        elif raw[index : index + 3].isdigit():
            out.append(int(raw[index : index + 3], 8) & 0xFF)
            index += 3
        else:
            out.append(_ESCAPES.get(chr(raw[index]), raw[index]))
            index += 1
    return out.decode("utf-8", "replace")


def _header_path(line: str) -> str | None:
    """The path of a ``---``/``+++`` line; None for ``/dev/null``."""
    name = line[4:].rstrip("\t")
    if len(name) > 1 and name.startswith('"') and name.endswith('"'):
        name = _unquote(name[1:-1])
    if name == "/dev/null":
        return None
    return name[2:] if name[:2] in ("a/", "b/") else name


def parse_diff(diff: str) -> dict[str, FileDiff]:
    """The unified diff by (new, or for a deletion old) path; counts keep hunk lines exact."""
    files: dict[str, FileDiff] = {}
    lines = diff.split("\n")
    old_path: str | None = None
    current: FileDiff | None = None
    index = 0
    while index < len(lines):
        line = lines[index]
        index += 1
        if line.startswith("diff --git "):
            old_path, current = None, None
        elif line.startswith("--- "):
            old_path = _header_path(line)
        elif line.startswith("+++ "):
            path = _header_path(line) or old_path or ""
            current = files.setdefault(path, FileDiff(path))
        elif (hunk := _HUNK.match(line)) and current is not None:
            old_left = int(hunk.group(1) or "1")
            new_left = int(hunk.group(3) or "1")
            number = int(hunk.group(2))
            run: list[tuple[bool, int, str]] = []
            current.runs.append(run)
            while (old_left > 0 or new_left > 0) and index < len(lines):
                body = lines[index]
                index += 1
                kind, text = body[:1], body[1:]
                if kind == "+":
                    current.added.append((number, text))
                    run.append((True, number, text))
                    number, new_left = number + 1, new_left - 1
                elif kind == "-":
                    current.removed.append(text)
                    old_left -= 1
                elif kind == "\\":  # "\ No newline at end of file"
                    continue
                else:
                    run.append((False, number, text))
                    number, new_left, old_left = number + 1, new_left - 1, old_left - 1
    return files


# -- the gates --------------------------------------------------------------------------------


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _listed(items: Sequence[str], limit: int = 2) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


def gate_paths(worktree: Worktree, patch: Patch, policy: HealPolicy) -> GateResult:
    """Every path the patch names is within ``heal_paths`` and none is a secrets file."""
    paths = changed_paths(patch.files)
    secret = [p for p in paths if not readable(worktree.path / p, root=worktree.path)]
    if secret:
        return GateResult("paths", False, f"{_listed(secret)}: a secrets file, never changed")
    outside = [p for p in paths if not matches(p, policy.paths)]
    if outside:
        return GateResult("paths", False, f"{_listed(outside)} outside heal_paths")
    return GateResult("paths", True, f"{_plural(len(patch.files), 'file')} within heal_paths")


def gate_size(patch: Patch, policy: HealPolicy) -> GateResult:
    """At most ``heal_max_files`` files and ``heal_max_lines`` lines added plus removed."""
    files, lines = len(patch.files), patch.added + patch.removed
    seen = f"{_plural(files, 'file')} +{patch.added}/{MINUS}{patch.removed}"
    if files > policy.max_files:
        return GateResult("size", False, f"{seen}: over {policy.max_files} files")
    if lines > policy.max_lines:
        return GateResult("size", False, f"{seen}: over {policy.max_lines} lines")
    return GateResult("size", True, seen)


def _swallowed(diff: FileDiff) -> int | None:
    """The line of a new ``except ...: pass`` (or ``...``), on one line or two; None if none."""
    for run in diff.runs:
        for index, (added, number, text) in enumerate(run):
            if added and _EXCEPT_PASS.match(text):
                return number
            if index + 1 < len(run) and _EXCEPT.match(text):
                next_added, _, next_text = run[index + 1]
                if (added or next_added) and _PASS.match(next_text):
                    return number
    return None


def gate_tests(patch: Patch, diffs: dict[str, FileDiff] | None = None) -> GateResult:
    """No test deleted or renamed away, no skip or xfail added, no exception swallowed."""
    for stat in patch.files:
        if stat.status == "deleted" and is_test_file(stat.path):
            return GateResult("tests", False, f"{stat.path} deleted")
        if stat.status == "renamed" and stat.old_path and is_test_file(stat.old_path):
            return GateResult("tests", False, f"{stat.old_path} renamed to {stat.path}")
    for path, diff in (parse_diff(patch.diff) if diffs is None else diffs).items():
        for number, text in diff.added:
            for pattern, what in _SKIPS:
                if pattern.search(text):
                    return GateResult("tests", False, f"{path}:{number}: adds {what}")
        if path.endswith((".py", ".pyi")) and (line := _swallowed(diff)) is not None:
            return GateResult("tests", False, f"{path}:{line}: adds except: pass")
    return GateResult("tests", True, "no test deleted or skipped, no except: pass")


def _writes_state(text: str) -> bool:
    return bool(_IMPORTS_LIBRARY.search(text)) or all(key in text for key in STATE_KEYS)


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return None


def gate_state_keys(
    worktree: Worktree,
    patch: Patch,
    policy: HealPolicy,
    diffs: dict[str, FileDiff] | None = None,
) -> GateResult:
    """The workflow's script still writes ``supervisor.status``, ``.heartbeat``, ``.summary``.

    A script counts when it is a changed ``.py``/``.ts``/``.tsx`` file within
    ``heal_paths`` that wrote its state before the patch (it imported
    ``workflows`` or named all three keys): a helper module beside it that
    never did is not asked to. Any such file also may not lose a line naming
    a key without gaining one.
    """
    diffs = parse_diff(patch.diff) if diffs is None else diffs

    checked = 0
    for stat in patch.files:
        if PurePosixPath(stat.path).suffix not in SCRIPT_SUFFIXES:
            continue
        if not matches(stat.path, policy.paths):
            continue
        old = (
            git.file_at(worktree.repo, patch.base, stat.old_path or stat.path)
            if stat.status != "added"
            else None
        )
        new = _read(worktree.path / stat.path) if stat.status != "deleted" else None
        if old is not None and _writes_state(old):
            checked += 1
            if new is None:
                return GateResult("state keys", False, f"{stat.path} deleted: it wrote the state")
            if not _writes_state(new):
                missing = [key for key in STATE_KEYS if key not in new]
                return GateResult(
                    "state keys", False, f"{stat.path} no longer writes {_listed(missing, 3)}"
                )
        diff = diffs.get(stat.path)
        if diff is None:
            continue
        for key in STATE_KEYS:
            lost = any(key in text for text in diff.removed)
            if lost and not any(key in text for _, text in diff.added):
                return GateResult("state keys", False, f"{stat.path}: removes a line with {key}")
    if not checked:
        return GateResult("state keys", True, "no script that writes the state changed")
    verb = "writes its" if checked == 1 else "write their"
    return GateResult("state keys", True, f"{_plural(checked, 'script')} still {verb} state")


def gate_compiles(worktree: Worktree, patch: Patch) -> GateResult:
    """Every changed ``.py`` file compiles; nothing is written (no ``__pycache__`` to commit)."""
    present = [stat.path for stat in patch.files if stat.status != "deleted"]
    python = [path for path in present if path.endswith(".py")]
    typescript = [path for path in present if PurePosixPath(path).suffix in TS_SUFFIXES]
    for path in python:
        try:
            source = (worktree.path / path).read_bytes()
        except OSError as exc:
            return GateResult("compiles", False, f"{path}: cannot read: {exc.strerror or exc}")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                compile(source, path, "exec", dont_inherit=True)
        except SyntaxError as exc:
            where = f"{path}:{exc.lineno}" if exc.lineno else path
            return GateResult("compiles", False, f"{where}: {type(exc).__name__}: {exc.msg}")
        except ValueError as exc:  # null bytes, on 3.11
            return GateResult("compiles", False, f"{path}: {type(exc).__name__}: {exc}")
    said = "no .py file changed"
    if python:
        said = f"{_plural(len(python), '.py file')} compile{'s' if len(python) == 1 else ''}"
    if typescript:
        said += f"; {_plural(len(typescript), 'TS file')} left to the check command"
    return GateResult("compiles", True, said)


def _check_environment() -> dict[str, str]:
    """The supervisor's environment minus secrets and ``GIT_*``: the patched code runs in it."""
    return {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("GIT_") and not _SECRET_VARIABLE.search(name)
    }


def _tail(output: BinaryIO) -> str:
    """The last ``TAIL_LINES`` lines of the output that say something, joined for one line."""
    output.seek(max(0, output.seek(0, os.SEEK_END) - TAIL_BYTES))
    text = output.read().decode("utf-8", errors="replace")
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    joined = " | ".join(lines[-TAIL_LINES:])
    return joined if len(joined) <= DETAIL_CHARS else "…" + joined[-(DETAIL_CHARS - 1) :]


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def _seconds(value: float) -> str:
    return f"{value:g}s"


def gate_check(worktree: Worktree, policy: HealPolicy) -> GateResult:
    """``heal_check_command`` in the worktree passes (exit 0) within its time limit.

    It runs in a session of its own; on timeout the whole group is killed,
    and so is anything it left running when it exits.
    """
    argv = policy.check_command
    if not argv:
        return GateResult("check", True, "no heal_check_command")
    with tempfile.TemporaryFile() as output:
        try:
            process = subprocess.Popen(
                argv,
                cwd=worktree.path,
                env=_check_environment(),
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        except OSError as exc:
            return GateResult("check", False, f"cannot run {argv[0]}: {exc.strerror or exc}")
        timed_out = False
        try:
            code = process.wait(timeout=policy.check_timeout_seconds)
        except subprocess.TimeoutExpired:
            timed_out = True
            _kill_group(process.pid)
            try:
                code = process.wait(timeout=KILL_WAIT_SECONDS)
            except subprocess.TimeoutExpired:  # stuck in the kernel: it is dead to us
                code = -signal.SIGKILL
        finally:
            _kill_group(process.pid)  # whatever it left behind, and on any way out of here
        tail = _tail(output)
    if timed_out:
        said = f"timed out after {_seconds(policy.check_timeout_seconds)} (killed)"
    elif code < 0:
        said = f"killed by signal {-code}"
    else:
        said = f"exit {code}"
    return GateResult("check", code == 0 and not timed_out, f"{said}: {tail}" if tail else said)


def check_base(worktree: Worktree) -> GateResult:
    """The live tree is still at the commit the fix was made from."""
    try:
        live = git.head(worktree.repo)
    except git.GitError as exc:
        return GateResult("base", False, f"cannot read the live HEAD: {exc}")
    if live != worktree.base:
        return GateResult("base", False, f"stale: live HEAD moved {worktree.base[:7]} → {live[:7]}")
    return GateResult("base", True, f"live HEAD still at {live[:7]}")


def run_static_gates(worktree: Worktree, patch: Patch, policy: HealPolicy) -> list[GateResult]:
    """Every gate but the smoke run and the base check, in order.

    The check command runs the patched code, so it is not run once an
    earlier gate refused the change (its result says so).
    """
    diffs = parse_diff(patch.diff)
    results = [
        gate_paths(worktree, patch, policy),
        gate_size(patch, policy),
        gate_tests(patch, diffs),
        gate_state_keys(worktree, patch, policy, diffs),
        gate_compiles(worktree, patch),
    ]
    if all(result.passed for result in results):
        results.append(gate_check(worktree, policy))
    elif policy.check_command:
        results.append(GateResult("check", False, NOT_RUN))
    else:
        results.append(GateResult("check", True, "no heal_check_command"))
    return results
