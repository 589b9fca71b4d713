"""Heal's git operations on real temporary repositories (never this project's own).

Each test makes a repository under ``tmp_path`` with ``git init -b main``: a
workflow script, a ``tests/`` directory and one commit, then drives
``supervisor.heal.git`` against it and checks the result with plain git.
"""

from __future__ import annotations

import shutil
import subprocess
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from supervisor.heal import git
from supervisor.heal.types import FileStat, Worktree

NOW = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
FLOW = """\
import sqlite3

db = sqlite3.connect("state.db")
db.execute("insert into state values ('supervisor.status', 'running')")
db.execute("insert into state values ('supervisor.summary', 'working')")
retries = settings["retry"]
db.execute("insert into state values ('supervisor.heartbeat', 'now')")
"""


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
    (root / "flow.py").write_text(FLOW, encoding="utf-8")
    (root / "helper.py").write_text("X = 1\n", encoding="utf-8")
    (root / "tests" / "test_flow.py").write_text("def test_it():\n    pass\n", encoding="utf-8")
    run_git(root, "init", "-q", "-b", "main")
    run_git(root, "add", "-A")
    run_git(root, "commit", "-q", "-m", "the flow")
    return root


@pytest.fixture
def worktree(repo: Path, tmp_path: Path) -> Worktree:
    return git.make_worktree(repo, "flow", git.head(repo), into=tmp_path / "heal", now=NOW)


def fix(worktree: Worktree) -> None:
    path = worktree.path / "flow.py"
    path.write_text(path.read_text().replace('"retry"', '"retries"'), encoding="utf-8")


def test_repo_root_finds_the_repository_from_inside_and_none_outside(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert git.repo_root(repo) == repo.resolve()
    assert git.repo_root(repo / "tests") == repo.resolve()
    assert git.repo_root(repo / "flow.py") == repo.resolve()
    outside = tmp_path / "plain"
    outside.mkdir()
    assert git.repo_root(outside) is None
    assert git.repo_root(tmp_path / "missing") is None
    monkeypatch.setenv("PATH", str(tmp_path / "no-bin"))
    assert git.repo_root(repo) is None  # no git at all


def test_head_and_current_branch_attached_and_detached(repo: Path) -> None:
    sha = run_git(repo, "rev-parse", "HEAD")
    assert git.head(repo) == sha
    assert len(sha) == 40
    assert git.current_branch(repo) == "main"
    run_git(repo, "checkout", "-q", "--detach")
    assert git.current_branch(repo) is None
    assert git.head(repo) == sha


def test_a_git_error_is_one_line_naming_the_command(tmp_path: Path) -> None:
    with pytest.raises(git.GitError) as caught:
        git.head(tmp_path)
    message = str(caught.value)
    assert message.startswith("git rev-parse")
    assert "not a git repository" in message
    assert "\n" not in message


def test_a_missing_directory_is_a_git_error_not_a_missing_git(tmp_path: Path) -> None:
    with pytest.raises(git.GitError, match="is not a directory"):
        git.head(tmp_path / "gone")


def test_the_callers_git_environment_does_not_leak_in(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = tmp_path / "other"
    other.mkdir()
    run_git(other, "init", "-q", "-b", "main")
    monkeypatch.setenv("GIT_DIR", str(other / ".git"))
    monkeypatch.setenv("GIT_WORK_TREE", str(other))
    assert git.head(repo) == run_git(repo, "--git-dir", str(repo / ".git"), "rev-parse", "HEAD")


def test_make_worktree_names_the_branch_and_directory_by_utc_time(
    repo: Path, tmp_path: Path
) -> None:
    base = git.head(repo)
    local = NOW.astimezone(timezone(timedelta(hours=2)))
    worktree = git.make_worktree(repo, "flow", base, into=tmp_path / "heal", now=local)
    assert worktree.branch == "heal/flow/20240102-030405"
    assert worktree.path == (tmp_path / "heal" / "flow-20240102-030405").resolve()
    assert worktree.repo == repo.resolve()
    assert worktree.base == base
    assert worktree.live_branch == "main"
    assert (worktree.path / "flow.py").read_text() == FLOW
    assert run_git(worktree.path, "rev-parse", "--abbrev-ref", "HEAD") == worktree.branch
    assert run_git(repo, "rev-parse", worktree.branch) == base


def test_make_worktree_takes_a_suffix_when_the_name_is_taken(repo: Path, tmp_path: Path) -> None:
    base = git.head(repo)
    made = [git.make_worktree(repo, "flow", base, into=tmp_path / "heal", now=NOW) for _ in "abc"]
    assert [w.branch for w in made] == [
        "heal/flow/20240102-030405",
        "heal/flow/20240102-030405-2",
        "heal/flow/20240102-030405-3",
    ]
    assert [w.path.name for w in made] == [
        "flow-20240102-030405",
        "flow-20240102-030405-2",
        "flow-20240102-030405-3",
    ]
    assert all(w.path.is_dir() for w in made)


def test_make_worktree_resolves_a_ref_and_makes_a_safe_branch_for_a_dotted_name(
    repo: Path, tmp_path: Path
) -> None:
    worktree = git.make_worktree(repo, "a..b.lock", "HEAD", into=tmp_path / "heal", now=NOW)
    assert worktree.base == git.head(repo)
    assert worktree.branch == "heal/a-b-lock/20240102-030405"
    assert worktree.path.name == "a..b.lock-20240102-030405"


def test_make_worktree_refuses_an_unknown_base(repo: Path, tmp_path: Path) -> None:
    with pytest.raises(git.GitError, match="rev-parse"):
        git.make_worktree(repo, "flow", "no-such-ref", into=tmp_path / "heal", now=NOW)


def test_patch_sees_edits_new_files_deletions_and_renames(worktree: Worktree) -> None:
    fix(worktree)
    (worktree.path / "extra.py").write_text("A = 1\nB = 2\n", encoding="utf-8")
    (worktree.path / "helper.py").unlink()
    (worktree.path / "tests" / "test_flow.py").rename(worktree.path / "tests" / "test_moved.py")
    patch = git.patch(worktree)
    assert patch.base == worktree.base
    assert sorted(patch.files, key=lambda stat: stat.path) == [
        FileStat("extra.py", "added", 2, 0),
        FileStat("flow.py", "modified", 1, 1),
        FileStat("helper.py", "deleted", 0, 1),
        FileStat("tests/test_moved.py", "renamed", 0, 0, old_path="tests/test_flow.py"),
    ]
    assert (patch.added, patch.removed) == (3, 2)
    assert '+retries = settings["retries"]' in patch.diff
    assert '-retries = settings["retry"]' in patch.diff
    assert "+B = 2" in patch.diff
    assert "rename from tests/test_flow.py" in patch.diff


def test_patch_of_an_untouched_worktree_is_empty(worktree: Worktree) -> None:
    patch = git.patch(worktree)
    assert patch.files == ()
    assert patch.diff == ""


def test_file_at_reads_a_file_of_a_commit(repo: Path) -> None:
    assert git.file_at(repo, git.head(repo), "flow.py") == FLOW
    assert git.file_at(repo, git.head(repo), "nope.py") is None


def test_commit_records_the_approver_and_only_what_the_patch_showed(worktree: Worktree) -> None:
    fix(worktree)
    shown = git.patch(worktree)
    (worktree.path / "leftover.txt").write_text("from a check run\n", encoding="utf-8")
    sha = git.commit(worktree, "heal(flow): read retries", author="alice (42)")
    assert run_git(worktree.repo, "rev-parse", worktree.branch) == sha
    assert run_git(worktree.repo, "rev-parse", f"{sha}~1") == worktree.base
    message = run_git(worktree.repo, "log", "-1", "--format=%B", sha)
    assert message.splitlines()[0] == "heal(flow): read retries"
    assert message.splitlines()[-1] == "Approved-by: alice (42)"
    changed = run_git(worktree.repo, "diff", "--name-only", worktree.base, sha)
    assert changed.splitlines() == [stat.path for stat in shown.files] == ["flow.py"]
    assert run_git(worktree.repo, "rev-parse", "HEAD") == worktree.base  # live untouched


def test_commit_without_a_patch_takes_the_whole_tree(worktree: Worktree) -> None:
    fix(worktree)
    (worktree.path / "new.py").write_text("N = 1\n", encoding="utf-8")
    sha = git.commit(worktree, "both", author="bob")
    changed = run_git(worktree.repo, "diff", "--name-only", worktree.base, sha)
    assert sorted(changed.splitlines()) == ["flow.py", "new.py"]


def test_commit_with_nothing_to_commit_is_a_git_error(worktree: Worktree) -> None:
    with pytest.raises(git.GitError, match="git commit"):
        git.commit(worktree, "nothing", author="bob")


def test_fast_forward_moves_the_live_branch_and_returns_the_previous_head(
    worktree: Worktree,
) -> None:
    fix(worktree)
    git.patch(worktree)
    sha = git.commit(worktree, "fix", author="alice")
    (worktree.repo / "helper.py").write_text("X = 2\n", encoding="utf-8")  # an unrelated edit
    assert git.fast_forward(worktree, sha) == worktree.base
    assert run_git(worktree.repo, "rev-parse", "main") == sha
    assert git.current_branch(worktree.repo) == "main"
    assert '"retries"' in (worktree.repo / "flow.py").read_text()
    assert (worktree.repo / "helper.py").read_text() == "X = 2\n"  # carried along


def test_fast_forward_on_a_detached_head_moves_head_only(worktree: Worktree) -> None:
    run_git(worktree.repo, "checkout", "-q", "--detach")
    fix(worktree)
    sha = git.commit(worktree, "fix", author="alice")
    stale_free = Worktree(worktree.repo, worktree.path, worktree.branch, worktree.base)
    assert git.fast_forward(stale_free, sha) == worktree.base
    assert git.head(worktree.repo) == sha
    assert git.current_branch(worktree.repo) is None
    assert run_git(worktree.repo, "rev-parse", "main") == worktree.base


def test_fast_forward_refuses_a_stale_base(worktree: Worktree) -> None:
    fix(worktree)
    sha = git.commit(worktree, "fix", author="alice")
    (worktree.repo / "helper.py").write_text("X = 3\n", encoding="utf-8")
    run_git(worktree.repo, "commit", "-qam", "someone else")
    moved = git.head(worktree.repo)
    assert git.is_stale(worktree)
    with pytest.raises(git.GitError, match="stale"):
        git.fast_forward(worktree, sha)
    assert git.head(worktree.repo) == moved


def test_fast_forward_refuses_local_edits_to_a_file_the_commit_touches(
    worktree: Worktree,
) -> None:
    fix(worktree)
    sha = git.commit(worktree, "fix", author="alice")
    (worktree.repo / "flow.py").write_text(FLOW + "# mine\n", encoding="utf-8")
    with pytest.raises(git.GitError, match=r"local changes to flow\.py"):
        git.fast_forward(worktree, sha)
    assert git.head(worktree.repo) == worktree.base
    assert (worktree.repo / "flow.py").read_text().endswith("# mine\n")


def test_fast_forward_refuses_an_untracked_file_where_the_commit_adds_one(
    worktree: Worktree,
) -> None:
    (worktree.path / "new.py").write_text("N = 1\n", encoding="utf-8")
    sha = git.commit(worktree, "add", author="alice")
    (worktree.repo / "new.py").write_text("mine\n", encoding="utf-8")
    with pytest.raises(git.GitError, match=r"new\.py"):
        git.fast_forward(worktree, sha)
    assert (worktree.repo / "new.py").read_text() == "mine\n"


def test_fast_forward_refuses_a_commit_not_made_on_the_base(worktree: Worktree, repo: Path) -> None:
    run_git(repo, "checkout", "-q", "--orphan", "elsewhere")
    run_git(repo, "commit", "-q", "-m", "unrelated history")
    unrelated = git.head(repo)
    run_git(repo, "checkout", "-q", "main")
    with pytest.raises(git.GitError, match="descendant"):
        git.fast_forward(worktree, unrelated)
    assert git.head(repo) == worktree.base


def test_revert_undoes_the_commit_with_a_reason(worktree: Worktree) -> None:
    fix(worktree)
    sha = git.commit(worktree, "fix", author="alice")
    git.fast_forward(worktree, sha)
    undone = git.revert(worktree.repo, sha, author="heal", reason="the same KeyError came back")
    assert git.head(worktree.repo) == undone
    assert run_git(worktree.repo, "rev-parse", "HEAD~1") == sha
    assert (worktree.repo / "flow.py").read_text() == FLOW
    message = run_git(worktree.repo, "log", "-1", "--format=%B")
    assert message.startswith('Revert "fix"')
    assert f"This reverts commit {sha}" in message
    assert "Reason: the same KeyError came back" in message
    assert message.splitlines()[-1] == "Reverted-by: heal"
    assert run_git(worktree.repo, "status", "--porcelain") == ""


def test_revert_that_conflicts_is_aborted_and_raised(worktree: Worktree) -> None:
    fix(worktree)
    sha = git.commit(worktree, "fix", author="alice")
    git.fast_forward(worktree, sha)
    flow = worktree.repo / "flow.py"
    flow.write_text(flow.read_text().replace('"retries"', '"tries"'), encoding="utf-8")
    run_git(worktree.repo, "commit", "-qam", "moved on")
    moved = git.head(worktree.repo)
    with pytest.raises(git.GitError, match="git revert"):
        git.revert(worktree.repo, sha, author="heal", reason="relapse")
    assert git.head(worktree.repo) == moved
    assert run_git(worktree.repo, "status", "--porcelain") == ""
    assert not (worktree.repo / ".git" / "REVERT_HEAD").exists()


def test_commit_and_revert_are_not_blocked_by_failing_hooks(worktree: Worktree) -> None:
    hooks = worktree.repo / ".git" / "hooks"
    for name in ("pre-commit", "prepare-commit-msg", "commit-msg"):
        (hooks / name).write_text("#!/bin/sh\nexit 1\n", encoding="utf-8")
        (hooks / name).chmod(0o755)
    fix(worktree)
    sha = git.commit(worktree, "fix", author="alice")
    git.fast_forward(worktree, sha)
    git.revert(worktree.repo, sha, author="heal", reason="relapse")
    assert (worktree.repo / "flow.py").read_text() == FLOW


def test_remove_worktree_with_and_without_its_branch(repo: Path, tmp_path: Path) -> None:
    base = git.head(repo)
    kept = git.make_worktree(repo, "flow", base, into=tmp_path / "heal", now=NOW)
    dropped = git.make_worktree(repo, "flow", base, into=tmp_path / "heal", now=NOW)
    fix(dropped)  # a dirty worktree goes too
    git.remove_worktree(kept, delete_branch=False)
    git.remove_worktree(dropped, delete_branch=True)
    assert not kept.path.exists()
    assert not dropped.path.exists()
    branches = run_git(repo, "branch", "--list", "heal/*", "--format=%(refname:short)")
    assert branches.splitlines() == [kept.branch]
    assert str(kept.path) not in run_git(repo, "worktree", "list")
    git.remove_worktree(dropped, delete_branch=True)  # already gone: no error
    git.remove_worktree(kept, delete_branch=True)
    assert run_git(repo, "branch", "--list", "heal/*") == ""


def test_remove_worktree_tolerates_a_directory_deleted_by_hand(
    worktree: Worktree, repo: Path
) -> None:
    shutil.rmtree(worktree.path)
    git.remove_worktree(worktree, delete_branch=True)
    assert run_git(repo, "worktree", "list", "--porcelain").count("worktree ") == 1
    assert run_git(repo, "branch", "--list", "heal/*") == ""


def test_is_stale_follows_the_live_head(worktree: Worktree) -> None:
    assert not git.is_stale(worktree)
    (worktree.repo / "helper.py").write_text("X = 5\n", encoding="utf-8")
    run_git(worktree.repo, "commit", "-qam", "moved")
    assert git.is_stale(worktree)


def test_is_stale_when_the_live_repository_is_gone(worktree: Worktree, tmp_path: Path) -> None:
    gone = Worktree(tmp_path / "nowhere", worktree.path, worktree.branch, worktree.base)
    assert git.is_stale(gone)
