"""The rules every agent change goes through, and a history that stays valid for the API."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from supervisor.agent.builtin import INTERRUPTED, closed, transcript
from supervisor.agent.changes import ChangeRefused, plan_edit, plan_write
from supervisor.agent.steps import describe


def test_a_change_is_planned_in_memory_and_applied_only_as_shown(tmp_path: Path) -> None:
    (tmp_path / "api.py").write_text("a = 1\nb = 2\n", encoding="utf-8")
    change = plan_edit(tmp_path, "api.py", "b = 2", "b = 3")
    assert (tmp_path / "api.py").read_text(encoding="utf-8") == "a = 1\nb = 2\n"
    assert "-b = 2\n+b = 3\n" in change.diff
    assert change.counts == (1, 1)
    change.apply()
    assert (tmp_path / "api.py").read_text(encoding="utf-8") == "a = 1\nb = 3\n"


def test_a_stale_change_is_refused(tmp_path: Path) -> None:
    (tmp_path / "api.py").write_text("a = 1\n", encoding="utf-8")
    change = plan_write(tmp_path, "api.py", "a = 2\n")
    (tmp_path / "api.py").write_text("a = 5\n", encoding="utf-8")  # someone else's edit
    with pytest.raises(ChangeRefused, match="changed since"):
        change.apply()
    assert (tmp_path / "api.py").read_text(encoding="utf-8") == "a = 5\n"


@pytest.mark.parametrize(
    ("path", "why"),
    [
        ("../outside.py", "outside"),
        ("/etc/passwd", "outside"),
        (".env", "secrets"),
        ("deploy/id_rsa", "secrets"),
        ("link/escape.py", "outside"),
    ],
)
def test_paths_outside_cwd_or_holding_secrets_are_refused(
    tmp_path: Path, path: str, why: str
) -> None:
    root = tmp_path / "repo"
    root.mkdir()
    (root / "link").symlink_to(tmp_path)
    with pytest.raises(ChangeRefused, match=why):
        plan_write(root, path, "x\n")


def test_a_symlink_swapped_in_after_the_plan_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    root.mkdir()
    change = plan_write(root, "new.py", "x\n")
    (root / "new.py").symlink_to(tmp_path / "elsewhere.py")
    with pytest.raises(ChangeRefused, match="link"):
        change.apply()
    assert not (tmp_path / "elsewhere.py").exists()


def test_writing_the_redaction_mark_over_a_secret_is_refused(tmp_path: Path) -> None:
    (tmp_path / "conf.py").write_text('KEY = "abc"\n', encoding="utf-8")
    with pytest.raises(ChangeRefused, match="secret blanked"):
        plan_edit(tmp_path, "conf.py", 'KEY = "abc"', 'KEY = "[REDACTED]"')


def test_a_history_left_mid_tool_call_is_closed_before_the_next_message() -> None:
    tool_use = {"type": "tool_use", "id": "t1", "name": "write", "input": {}}
    cut: list[dict[str, Any]] = [
        {"role": "user", "content": "write it"},
        {"role": "assistant", "content": [{"type": "text", "text": "Writing"}, tool_use]},
    ]
    assert closed(cut)[-1] == {
        "role": "assistant",
        "content": [{"type": "text", "text": "Writing"}],
    }
    bare: list[dict[str, Any]] = [cut[0], {"role": "assistant", "content": [tool_use]}]
    assert closed(bare)[-1] == {"role": "assistant", "content": INTERRUPTED}
    assert closed([cut[0]])[-1] == {"role": "assistant", "content": INTERRUPTED}
    assert closed([]) == []


def test_the_transcript_for_a_summary_keeps_texts_and_calls_and_cuts_results() -> None:
    history: list[dict[str, Any]] = [
        {"role": "user", "content": "why?"},
        {"role": "assistant", "content": [{"type": "tool_use", "name": "tail", "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "content": "x" * 5000}]},
    ]
    text = transcript(history)
    assert "user: why?" in text
    assert "tool call: tail" in text
    assert len(text) < 1000


def test_steps_read_the_same_for_both_backends() -> None:
    assert str(describe("read", {"file_path": "src/api.py"})) == "📖 read api.py"
    assert str(describe("Read", {"file_path": "src/api.py"})) == "📖 read api.py"
    assert str(describe("Grep", {"pattern": "retry"})) == "🔎 grep retry"
    assert str(describe("tail", {"lines": 200})) == "📜 tail 200"
