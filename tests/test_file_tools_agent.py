"""``ClaudeAgent(workdir=...)``: the SDK's tool runner and file tools, against the stand-in API.

The stand-in answers first with a ``write`` tool call, then with the final
structured reply; the file must really be written inside the working
directory, the tool result must go back to the model, and nothing may be
written outside the directory.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from tests.fakes.messages_api import FakeMessagesAPI, tool_results
from workflows import ClaudeAgent

pytestmark = pytest.mark.timeout(20)


class Change(BaseModel):
    files: list[str]
    summary: str


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeMessagesAPI]:
    with FakeMessagesAPI() as server:
        monkeypatch.setenv("ANTHROPIC_BASE_URL", server.base_url)
        monkeypatch.setenv("ANTHROPIC_API_KEY", "test-key")
        yield server


def tool_names(request: dict[str, Any]) -> set[str]:
    tools = request.get("tools")
    assert isinstance(tools, list)
    return {str(tool["name"]) for tool in tools}


def test_the_agent_edits_files_in_its_workdir_then_answers(
    api: FakeMessagesAPI, tmp_path: Path
) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    api.queue_tool_use("write", {"file_path": "hello.py", "content": "print('hi')\n"})
    api.queue_reply(json.dumps({"files": ["hello.py"], "summary": "added hello.py"}))
    agent = ClaudeAgent(workdir=repo, max_retries=0)
    change = agent.run("Add hello.py", output=Change)
    assert change == Change(files=["hello.py"], summary="added hello.py")
    assert (repo / "hello.py").read_text() == "print('hi')\n"
    first, second = api.requests
    assert {"read", "write", "edit", "glob", "grep"} <= tool_names(first)
    assert "bash" not in tool_names(first)
    [result] = tool_results(second)
    assert result["tool_use_id"] == "toolu_fake"


def test_the_file_tools_refuse_to_leave_the_workdir(api: FakeMessagesAPI, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    outside = tmp_path / "outside.txt"
    api.queue_tool_use("write", {"file_path": str(outside), "content": "escaped"})
    api.queue_reply("I could not write there.")
    answer = ClaudeAgent(workdir=repo, max_retries=0).run("Write outside")
    assert answer == "I could not write there."
    assert not outside.exists()
    [result] = tool_results(api.requests[1])
    assert result.get("is_error") is True
