"""The heal gates, each passing a fair fix and refusing what it must, on real git worktrees.

Every test makes a repository under ``tmp_path`` (a workflow script, a helper,
a ``tests/`` directory, one commit), a heal worktree of it, edits the
worktree the way a model might, and runs a gate on ``git.patch`` of it.
"""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import psutil
import pytest

from supervisor.heal import gates, git
from supervisor.heal.types import FileStat, GateResult, HealPolicy, Patch, Worktree

NOW = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
FLOW = """\
import sqlite3

db = sqlite3.connect("state.db")


def put(key, value):
    db.execute("insert or replace into state values (?, ?)", (key, value))


put("supervisor.status", "running")
put("supervisor.summary", "working")
for step in range(3):
    put("supervisor.heartbeat", "now")
    try:
        retries = settings["retry"]
    except KeyError:
        raise
"""
LIBRARY_FLOW = """\
from workflows import Workflow

flow = Workflow("flow")
flow.run(lambda: settings["retry"])
"""
TEST = """\
import pytest


def test_it():
    assert True


@pytest.mark.skip(reason="flaky")
def test_old():
    pass
"""
POLICY = HealPolicy(mode="propose", paths=("flow.py", "lib/**/*.py", "tests/**"))


def run_git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args],
        cwd=repo,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    (root / "tests").mkdir(parents=True)
    (root / "lib" / "deep").mkdir(parents=True)
    (root / "flow.py").write_text(FLOW, encoding="utf-8")
    (root / "other.py").write_text("X = 1\n", encoding="utf-8")
    (root / "lib" / "deep" / "util.py").write_text("def f():\n    return 1\n", encoding="utf-8")
    (root / "lib" / "library_flow.py").write_text(LIBRARY_FLOW, encoding="utf-8")
    (root / "tests" / "test_flow.py").write_text(TEST, encoding="utf-8")
    run_git(root, "init", "-q", "-b", "main")
    run_git(root, "add", "-A")
    run_git(root, "commit", "-q", "-m", "the flow")
    return root


@pytest.fixture
def wt(repo: Path, tmp_path: Path) -> Worktree:
    return git.make_worktree(repo, "flow", git.head(repo), into=tmp_path / "heal", now=NOW)


def edit(wt: Worktree, path: str, old: str, new: str) -> None:
    file = wt.path / path
    text = file.read_text(encoding="utf-8")
    assert old in text, f"{old!r} not in {path}"
    file.write_text(text.replace(old, new, 1), encoding="utf-8")


def write(wt: Worktree, path: str, text: str) -> None:
    file = wt.path / path
    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_text(text, encoding="utf-8")


def good_fix(wt: Worktree) -> Patch:
    edit(wt, "flow.py", 'settings["retry"]', 'settings["retries"]')
    return git.patch(wt)


# -- globs and names --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "glob", "expected"),
    [
        ("flow.py", "flow.py", True),
        ("flow.py", "./flow.py", True),
        ("flow.py", "*.py", True),
        ("src/flow.py", "*.py", False),  # * never crosses a directory
        ("src/flow.py", "src/*.py", True),
        ("src/a/b/flow.py", "src/**/*.py", True),
        ("src/flow.py", "src/**/*.py", True),  # ** may be no directory at all
        ("other/flow.py", "src/**/*.py", False),
        ("src/a/b", "src/**", True),
        ("deep/x/flow.py", "**/flow.py", True),
        ("flow.py", "**/flow.py", True),
        ("flow.py", "**", True),
        ("Flow.py", "flow.py", False),
        ("flow1.py", "flow?.py", True),
        ("flowa.py", "flow[0-9].py", False),
        ("flowa.py", "flow[!0-9].py", True),
    ],
)
def test_glob_matching_is_full_match_style(path: str, glob: str, expected: bool) -> None:
    assert gates.glob_matches(path, glob) is expected


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("test_api.py", True),
        ("pkg/api_test.py", True),
        ("tests/helpers.py", True),
        ("web/__tests__/x.ts", True),
        ("web/app.test.tsx", True),
        ("web/app.spec.js", True),
        ("conftest.py", True),
        ("api.py", False),
        ("contest.py", False),
        ("testing.py", False),
        ("web/app.ts", False),
    ],
)
def test_what_counts_as_a_test_file(path: str, expected: bool) -> None:
    assert gates.is_test_file(path) is expected


def test_parse_diff_survives_odd_names_binary_files_and_header_like_lines(
    repo: Path, tmp_path: Path
) -> None:
    (repo / "notes.txt").write_text("keep\n-- a/flow.py\n++ b/flow.py\nend\n", encoding="utf-8")
    run_git(repo, "add", "-A")
    run_git(repo, "commit", "-qm", "notes")
    wt = git.make_worktree(repo, "flow", git.head(repo), into=tmp_path / "heal", now=NOW)
    odd = 'tests/test_a "b"\tc é.py'
    write(wt, odd, "import pytest\n\n\n@pytest.mark.xfail\ndef test_x():\n    pass\n")
    (wt.path / "blob.bin").write_bytes(bytes(range(256)))
    write(wt, "notes.txt", "keep\nend\nit.skip('x')\n")
    diffs = gates.parse_diff(git.patch(wt).diff)
    assert sorted(diffs) == ["notes.txt", odd]
    assert diffs["notes.txt"].removed == ["-- a/flow.py", "++ b/flow.py"]
    assert diffs["notes.txt"].added == [(3, "it.skip('x')")]
    assert diffs[odd].added[3] == (4, "@pytest.mark.xfail")


# -- paths ------------------------------------------------------------------------------------


def test_paths_passes_files_within_heal_paths(wt: Worktree) -> None:
    edit(wt, "lib/deep/util.py", "return 1", "return 2")
    patch = good_fix(wt)
    assert gates.gate_paths(wt, patch, POLICY) == GateResult(
        "paths", True, "2 files within heal_paths"
    )


def test_paths_refuses_a_file_outside_heal_paths(wt: Worktree) -> None:
    edit(wt, "other.py", "X = 1", "X = 2")
    result = gates.gate_paths(wt, good_fix(wt), POLICY)
    assert not result.passed
    assert result.detail == "other.py outside heal_paths"


def test_paths_refuses_a_rename_out_of_bounds(wt: Worktree) -> None:
    (wt.path / "other.py").rename(wt.path / "lib" / "other.py")
    patch = git.patch(wt)
    assert patch.files == (FileStat("lib/other.py", "renamed", 0, 0, old_path="other.py"),)
    result = gates.gate_paths(wt, patch, POLICY)
    assert (result.passed, result.detail) == (False, "other.py outside heal_paths")


@pytest.mark.parametrize("path", [".env", "config/secrets.py", "lib/api_key.py", "deploy.pem"])
def test_paths_refuses_a_secrets_file_even_when_allowed(wt: Worktree, path: str) -> None:
    write(wt, path, "VALUE = 1\n")
    result = gates.gate_paths(wt, git.patch(wt), HealPolicy(paths=("**",)))
    assert not result.passed
    assert result.detail == f"{path}: a secrets file, never changed"


def test_paths_refuses_everything_when_heal_paths_is_empty(wt: Worktree) -> None:
    result = gates.gate_paths(wt, good_fix(wt), HealPolicy())
    assert (result.passed, result.detail) == (False, "flow.py outside heal_paths")


# -- size -------------------------------------------------------------------------------------


def test_size_passes_a_small_fix_and_says_how_small(wt: Worktree) -> None:
    assert gates.gate_size(good_fix(wt), POLICY) == GateResult("size", True, "1 file +1/−1")


def test_size_refuses_too_many_files(wt: Worktree) -> None:
    for name in ("a", "b", "c"):
        write(wt, f"lib/{name}.py", "A = 1\n")
    result = gates.gate_size(good_fix(wt), POLICY)
    assert (result.passed, result.detail) == (False, "4 files +4/−1: over 3 files")


def test_size_refuses_too_many_lines(wt: Worktree) -> None:
    write(wt, "lib/big.py", "".join(f"A{n} = {n}\n" for n in range(80)))
    result = gates.gate_size(good_fix(wt), POLICY)
    assert (result.passed, result.detail) == (False, "2 files +81/−1: over 80 lines")


# -- tests ------------------------------------------------------------------------------------


def test_tests_passes_a_fix_that_adds_a_test(wt: Worktree) -> None:
    edit(wt, "tests/test_flow.py", "    assert True\n", "    assert True\n    assert 1 + 1 == 2\n")
    write(wt, "tests/test_new.py", "import sys\n\n\ndef test_new():\n    sys.exit(0)\n")
    result = gates.gate_tests(good_fix(wt), None)
    assert result.passed, result.detail


def test_tests_refuses_a_deleted_test(wt: Worktree) -> None:
    (wt.path / "tests" / "test_flow.py").unlink()
    result = gates.gate_tests(good_fix(wt), None)
    assert (result.passed, result.detail) == (False, "tests/test_flow.py deleted")


def test_tests_refuses_a_renamed_test(wt: Worktree) -> None:
    (wt.path / "tests" / "test_flow.py").rename(wt.path / "tests" / "flow_checks.py.bak")
    result = gates.gate_tests(good_fix(wt), None)
    assert not result.passed
    assert result.detail == "tests/test_flow.py renamed to tests/flow_checks.py.bak"


@pytest.mark.parametrize(
    ("path", "line", "what"),
    [
        ("tests/test_flow.py", "@pytest.mark.skip(reason='later')", "a pytest skip/xfail mark"),
        ("tests/test_flow.py", "@pytest.mark.skipif(True, reason='x')", "a pytest skip/xfail mark"),
        ("tests/test_flow.py", "@pytest.mark.xfail", "a pytest skip/xfail mark"),
        ("tests/test_flow.py", "pytest.skip('no')", "a pytest skip/xfail call"),
        ("tests/test_flow.py", "pytest.xfail('no')", "a pytest skip/xfail call"),
        ("tests/test_flow.py", "@unittest.skip('no')", "a unittest skip"),
        ("tests/test_flow.py", "@skip", "a @skip"),
        ("web/app.test.ts", "it.skip('works', () => {})", "a .skip("),
        ("web/app.test.ts", "describe.skip('all', () => {})", "a .skip("),
        ("web/app.test.ts", "xit('works', () => {})", "an xit("),
        ("web/app.test.ts", "test.only('this', () => {})", "an .only("),
    ],
)
def test_tests_refuses_a_new_skip_or_xfail(wt: Worktree, path: str, line: str, what: str) -> None:
    write(wt, path, (wt.path / path).read_text() if (wt.path / path).exists() else "")
    with (wt.path / path).open("a", encoding="utf-8") as file:
        file.write(f"\n{line}\ndef test_later():\n    pass\n")
    patch = git.patch(wt)
    result = gates.gate_tests(patch, None)
    assert not result.passed
    assert result.detail.startswith(f"{path}:")
    assert result.detail.endswith(f": adds {what}")


def test_tests_reports_the_line_of_the_new_skip(wt: Worktree) -> None:
    edit(wt, "tests/test_flow.py", "def test_it():", "@pytest.mark.xfail\ndef test_it():")
    result = gates.gate_tests(git.patch(wt), None)
    assert result.detail == "tests/test_flow.py:4: adds a pytest skip/xfail mark"


def test_tests_refuses_an_existing_skip_moved_onto_another_test(wt: Worktree) -> None:
    edit(wt, "tests/test_flow.py", '@pytest.mark.skip(reason="flaky")\n', "")
    edit(
        wt,
        "tests/test_flow.py",
        "def test_it():",
        '@pytest.mark.skip(reason="flaky")\ndef test_it():',
    )
    result = gates.gate_tests(git.patch(wt), None)
    assert (result.passed, result.detail) == (
        False,
        "tests/test_flow.py:4: adds a pytest skip/xfail mark",
    )


def test_tests_lets_a_skip_be_removed(wt: Worktree) -> None:
    edit(wt, "tests/test_flow.py", '@pytest.mark.skip(reason="flaky")\n', "")
    assert gates.gate_tests(git.patch(wt), None).passed


@pytest.mark.parametrize(
    "handler",
    [
        "    except: pass",
        "    except Exception: pass",
        "    except (KeyError, ValueError) as exc:  ...",
        "    except KeyError:\n        pass",
        "    except Exception:  # be safe\n        ...",
    ],
)
def test_tests_refuses_a_swallowed_exception(wt: Worktree, handler: str) -> None:
    edit(wt, "flow.py", "    except KeyError:\n        raise\n", handler + "\n")
    result = gates.gate_tests(git.patch(wt), None)
    assert not result.passed
    assert result.detail == "flow.py:16: adds except: pass"


def test_tests_refuses_pass_put_under_an_existing_except(wt: Worktree) -> None:
    edit(wt, "flow.py", "        raise\n", "        pass\n")
    result = gates.gate_tests(git.patch(wt), None)
    assert (result.passed, result.detail) == (False, "flow.py:16: adds except: pass")


def test_tests_lets_an_except_that_handles_the_error(wt: Worktree) -> None:
    edit(wt, "flow.py", "        raise\n", "        retries = 3\n")
    assert gates.gate_tests(git.patch(wt), None).passed


# -- state keys -------------------------------------------------------------------------------


def test_state_keys_passes_a_fix_that_keeps_them(wt: Worktree) -> None:
    result = gates.gate_state_keys(wt, good_fix(wt), POLICY)
    assert result == GateResult("state keys", True, "1 script still writes its state")


def test_state_keys_lets_a_key_line_change_when_the_key_stays(wt: Worktree) -> None:
    edit(wt, "flow.py", 'put("supervisor.summary", "working")', 'put("supervisor.summary", "step")')
    assert gates.gate_state_keys(wt, git.patch(wt), POLICY).passed


def test_state_keys_refuses_a_removed_heartbeat(wt: Worktree) -> None:
    edit(wt, "flow.py", '    put("supervisor.heartbeat", "now")\n', "    pass\n")
    result = gates.gate_state_keys(wt, git.patch(wt), POLICY)
    assert (result.passed, result.detail) == (
        False,
        "flow.py no longer writes supervisor.heartbeat",
    )


def test_state_keys_refuses_a_removed_key_line_though_the_key_is_named_elsewhere(
    repo: Path, tmp_path: Path
) -> None:
    (repo / "flow.py").write_text("# writes supervisor.heartbeat each step\n" + FLOW)
    run_git(repo, "commit", "-qam", "say what it writes")
    wt = git.make_worktree(repo, "flow", git.head(repo), into=tmp_path / "heal", now=NOW)
    edit(wt, "flow.py", '    put("supervisor.heartbeat", "now")\n', "    pass\n")
    result = gates.gate_state_keys(wt, git.patch(wt), POLICY)
    assert (result.passed, result.detail) == (
        False,
        "flow.py: removes a line with supervisor.heartbeat",
    )


def test_state_keys_lets_a_key_line_move(wt: Worktree) -> None:
    edit(wt, "flow.py", '    put("supervisor.heartbeat", "now")\n', "")
    edit(
        wt, "flow.py", "        raise\n", '        raise\n    put("supervisor.heartbeat", "now")\n'
    )
    assert gates.gate_state_keys(wt, git.patch(wt), POLICY).passed


def test_state_keys_refuses_a_deleted_script(wt: Worktree) -> None:
    (wt.path / "flow.py").unlink()
    result = gates.gate_state_keys(wt, git.patch(wt), POLICY)
    assert (result.passed, result.detail) == (False, "flow.py deleted: it wrote the state")


def test_state_keys_accepts_a_script_on_the_workflows_library(wt: Worktree) -> None:
    edit(wt, "lib/library_flow.py", 'settings["retry"]', 'settings["retries"]')
    result = gates.gate_state_keys(wt, git.patch(wt), POLICY)
    assert result == GateResult("state keys", True, "1 script still writes its state")


def test_state_keys_refuses_dropping_the_library_import(wt: Worktree) -> None:
    edit(wt, "lib/library_flow.py", "from workflows import Workflow\n", "Workflow = object\n")
    result = gates.gate_state_keys(wt, git.patch(wt), POLICY)
    assert not result.passed
    assert result.detail.startswith("lib/library_flow.py no longer writes supervisor.status")


def test_state_keys_does_not_ask_a_helper_to_write_state(wt: Worktree) -> None:
    edit(wt, "lib/deep/util.py", "return 1", "return 2")
    write(wt, "lib/new_helper.py", "def g():\n    return 3\n")
    result = gates.gate_state_keys(wt, git.patch(wt), POLICY)
    assert result == GateResult("state keys", True, "no script that writes the state changed")


# -- compiles ---------------------------------------------------------------------------------


def test_compiles_passes_valid_python_and_writes_no_bytecode(wt: Worktree) -> None:
    write(wt, "web/flow.tsx", "export const x = 1\n")
    result = gates.gate_compiles(wt, good_fix(wt))
    assert result == GateResult(
        "compiles", True, "1 .py file compiles; 1 TS file left to the check command"
    )
    assert not list(wt.path.rglob("__pycache__"))


def test_compiles_refuses_a_syntax_error_with_its_line(wt: Worktree) -> None:
    edit(wt, "flow.py", 'settings["retry"]', 'settings["retries"')
    result = gates.gate_compiles(wt, git.patch(wt))
    assert not result.passed
    assert result.detail.startswith("flow.py:15: SyntaxError: ")


def test_compiles_refuses_bad_indentation(wt: Worktree) -> None:
    edit(wt, "lib/deep/util.py", "    return 1", "  return 1\n    return 2")
    result = gates.gate_compiles(wt, git.patch(wt))
    assert not result.passed
    assert result.detail.startswith("lib/deep/util.py:3: IndentationError: ")


def test_compiles_ignores_a_deleted_file(wt: Worktree) -> None:
    (wt.path / "lib" / "deep" / "util.py").unlink()
    result = gates.gate_compiles(wt, git.patch(wt))
    assert result == GateResult("compiles", True, "no .py file changed")


# -- check ------------------------------------------------------------------------------------


def dead(pid: int, within: float = 5.0) -> bool:
    """Whether ``pid`` is gone (or a zombie nobody reaped yet) within a few seconds of a kill."""
    deadline = time.monotonic() + within
    while True:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)  # polling a kill already sent, not waiting out a timer


def policy_with(*argv: str, timeout: float = 30.0) -> HealPolicy:
    return HealPolicy(paths=POLICY.paths, check_command=argv, check_timeout_seconds=timeout)


def test_check_is_skipped_without_a_command(wt: Worktree) -> None:
    assert gates.gate_check(wt, POLICY) == GateResult("check", True, "no heal_check_command")


def test_check_passes_on_exit_zero_run_in_the_worktree(wt: Worktree) -> None:
    script = "import os; print('ran in', os.path.basename(os.getcwd()))"
    result = gates.gate_check(wt, policy_with(sys.executable, "-c", script))
    assert result == GateResult("check", True, f"exit 0: ran in {wt.path.name}")


def test_check_fails_on_a_non_zero_exit_with_the_last_five_lines(wt: Worktree) -> None:
    script = "import sys\nfor n in range(1, 9): print('line', n)\nsys.exit(3)"
    result = gates.gate_check(wt, policy_with(sys.executable, "-c", script))
    assert not result.passed
    assert result.detail == "exit 3: line 4 | line 5 | line 6 | line 7 | line 8"


def test_check_does_not_hand_secrets_to_the_patched_code(
    wt: Worktree, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SOME_API_TOKEN", "hunter2-value")
    monkeypatch.setenv("GIT_DIR", "/nowhere")
    monkeypatch.setenv("PLAIN_SETTING", "kept")
    names = ("SOME_API_TOKEN", "GIT_DIR", "PLAIN_SETTING")
    script = f"import os; print(sorted(k for k in os.environ if k in {names!r}))"
    result = gates.gate_check(wt, policy_with(sys.executable, "-c", script))
    assert result.detail == "exit 0: ['PLAIN_SETTING']"


def test_check_that_cannot_start_fails(wt: Worktree) -> None:
    result = gates.gate_check(wt, policy_with("./no-such-check"))
    assert not result.passed
    assert result.detail.startswith("cannot run ./no-such-check: ")


def test_check_that_times_out_is_killed_with_its_whole_group(wt: Worktree, tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    script = f"sleep 30 & echo $! > {pids}; echo $$ >> {pids}; echo started; wait"
    started = time.monotonic()
    result = gates.gate_check(wt, policy_with("sh", "-c", script, timeout=1.0))
    elapsed = time.monotonic() - started
    assert not result.passed
    assert result.detail == "timed out after 1s (killed): started"
    assert elapsed < 10  # 1 s and the kill, with room for two busy cores
    members = [int(pid) for pid in pids.read_text().split()]
    assert len(members) == 2
    assert all(dead(pid) for pid in members)


def test_check_kills_what_a_passing_command_left_running(wt: Worktree, tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    result = gates.gate_check(wt, policy_with("sh", "-c", f"sleep 30 & echo $! > {pids}"))
    assert result.passed
    assert dead(int(pids.read_text()))


# -- the sets and the base --------------------------------------------------------------------


def test_static_gates_all_pass_a_fair_fix(wt: Worktree) -> None:
    policy = policy_with(sys.executable, "-m", "py_compile", "flow.py")
    results = gates.run_static_gates(wt, good_fix(wt), policy)
    assert [r.name for r in results] == [
        "paths",
        "size",
        "tests",
        "state keys",
        "compiles",
        "check",
    ]
    assert all(r.passed for r in results), results


def test_static_gates_do_not_run_the_check_after_a_refusal(wt: Worktree, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    edit(wt, "other.py", "X = 1", "X = 2")
    policy = policy_with("touch", str(marker))
    results = {r.name: r for r in gates.run_static_gates(wt, good_fix(wt), policy)}
    assert not results["paths"].passed
    assert results["check"] == GateResult("check", False, gates.NOT_RUN)
    assert not marker.exists()


def test_check_base_passes_until_the_live_head_moves(wt: Worktree) -> None:
    assert gates.check_base(wt) == GateResult("base", True, f"live HEAD still at {wt.base[:7]}")
    (wt.repo / "other.py").write_text("X = 3\n", encoding="utf-8")
    run_git(wt.repo, "commit", "-qam", "moved on")
    result = gates.check_base(wt)
    assert not result.passed
    assert result.detail == f"stale: live HEAD moved {wt.base[:7]} → {git.head(wt.repo)[:7]}"
