"""A stand-in `claude` executable, so the Claude Code backend is tested without the real CLI.

`FakeClaudeCLI(directory)` writes an executable `claude` there (put `directory` first on PATH).
Each run of it plays the next queued `Script`: prints its stream-json lines, writes its stderr
and exits with its code; a `hang` script starts a child `sleep`, writes both pids (`pids()`)
and waits to be killed (`ignore_term`: it ignores SIGTERM too). Every run records its argv, env
and cwd (`calls()`). The line builders below give the shapes Claude Code 2.1 prints.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

JSON = dict[str, Any]
ROOT = Path(__file__).resolve().parents[2]
MODEL = "claude-sonnet-4-6"


@dataclass
class Script:
    """What one run of the fake does."""

    lines: list[JSON | str] = field(default_factory=list)  # a str is printed as it is
    exit_code: int = 0
    stderr: str = ""
    hang: bool = False
    ignore_term: bool = False


@dataclass(frozen=True)
class Call:
    """One run as the fake saw it."""

    argv: list[str]
    env: dict[str, str]
    cwd: str

    @property
    def prompt(self) -> str:
        """The text after `--`, where the runner puts the prompt."""
        return self.argv[self.argv.index("--") + 1]

    def option(self, name: str) -> str | None:
        """The value after `name`, or None when it is not given."""
        return self.argv[self.argv.index(name) + 1] if name in self.argv else None


class FakeClaudeCLI:
    """The fake's directory: its executable, its queued scripts and what its runs recorded."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.executable = directory / "claude"
        self.executable.write_text(
            f"#!{sys.executable}\n"
            "import sys\n"
            f"sys.path.insert(0, {str(ROOT)!r})\n"
            "from tests.fakes.claude_cli import main\n"
            f"main({str(directory)!r})\n"
        )
        self.executable.chmod(0o755)
        self._scripts: list[JSON] = []
        self._save()

    def queue(self, *lines: JSON | str, **options: Any) -> None:
        """Queue the next run: these lines, and `Script`'s other fields as keywords."""
        self._scripts.append(asdict(Script(list(lines), **options)))
        self._save()

    def calls(self) -> list[Call]:
        path = self.directory / "calls.jsonl"
        if not path.exists():
            return []
        return [Call(**json.loads(line)) for line in path.read_text().splitlines()]

    def pids(self) -> dict[str, int] | None:
        """The hanging run's pid (`fake`) and its child's (`child`), once both run."""
        path = self.directory / "pids.json"
        return json.loads(path.read_text()) if path.exists() else None

    def _save(self) -> None:
        (self.directory / "scripts.json").write_text(json.dumps(self._scripts))


def main(directory: str) -> None:
    """The fake's run: record the call, then play the script it is due."""
    here = Path(directory)
    calls = here / "calls.jsonl"
    done = len(calls.read_text().splitlines()) if calls.exists() else 0
    call = {"argv": sys.argv[1:], "env": dict(os.environ), "cwd": os.getcwd()}
    with calls.open("a") as out:
        out.write(json.dumps(call) + "\n")
    scripts = json.loads((here / "scripts.json").read_text())
    if done >= len(scripts):
        sys.stderr.write("fake claude: no script queued for this run\n")
        sys.exit(3)
    script = Script(**scripts[done])
    for line in script.lines:
        print(line if isinstance(line, str) else json.dumps(line), flush=True)
    sys.stderr.write(script.stderr)
    if script.hang:
        if script.ignore_term:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        child = subprocess.Popen(["sleep", "600"])
        pids = here / "pids.json"
        pids.with_suffix(".tmp").write_text(json.dumps({"fake": os.getpid(), "child": child.pid}))
        pids.with_suffix(".tmp").replace(pids)
        time.sleep(600)
    sys.exit(script.exit_code)


def init(session_id: str) -> JSON:
    """The first line of a run."""
    return {
        "type": "system",
        "subtype": "init",
        "session_id": session_id,
        "tools": ["Edit", "Glob", "Grep", "Read", "Write"],
        "mcp_servers": [],
        "model": MODEL,
        "permissionMode": "dontAsk",
        "apiKeySource": "ANTHROPIC_API_KEY",
        "claude_code_version": "2.1.197",
    }


def assistant(session_id: str, *content: JSON) -> JSON:
    """An assistant message with these content blocks."""
    message = {
        "id": "msg_fake",
        "model": MODEL,
        "type": "message",
        "role": "assistant",
        "content": list(content),
        "stop_reason": None,
        "usage": {"input_tokens": 10, "output_tokens": 0},
    }
    return {"type": "assistant", "message": message, "session_id": session_id}


def tool_use(name: str, tool_input: JSON, tool_id: str = "toolu_1") -> JSON:
    return {"type": "tool_use", "id": tool_id, "name": name, "input": tool_input}


def text(words: str) -> JSON:
    return {"type": "text", "text": words}


def result(
    session_id: str,
    answer: str,
    *,
    denials: Sequence[JSON] = (),
    usage: JSON | None = None,
    cost: float | None = 0.0123,
    model_usage: JSON | None = None,
    subtype: str = "success",
    is_error: bool = False,
) -> JSON:
    """The last line of a run; `denials` are `denied(...)` entries."""
    line: JSON = {
        "type": "result",
        "subtype": subtype,
        "is_error": is_error,
        "num_turns": 3,
        "result": answer,
        "session_id": session_id,
        "usage": usage
        or {
            "input_tokens": 100,
            "cache_creation_input_tokens": 20,
            "cache_read_input_tokens": 30,
            "output_tokens": 40,
        },
        "permission_denials": list(denials),
    }
    if cost is not None:
        line["total_cost_usd"] = cost
    if model_usage is not None:
        line["modelUsage"] = model_usage
    return line


def denied(name: str, tool_input: JSON, tool_id: str = "toolu_1") -> JSON:
    """One entry of a result's `permission_denials`."""
    return {"tool_name": name, "tool_use_id": tool_id, "tool_input": tool_input}
