"""The evidence pack: built from real files and a real git repository, redacted, capped."""

from __future__ import annotations

import os
import subprocess
from datetime import UTC, datetime
from pathlib import Path

from supervisor.config import ResolvedWorkflow
from supervisor.diagnosis.evidence import DEFAULT_BUDGET, build_pack
from supervisor.diagnosis.types import EvidencePack
from supervisor.events import EventRecord, WorkflowStatus
from supervisor.secrets import REDACTED, Redactor
from tests.supervisor_harness import resolve, settings

ENV_SECRET = "correct-horse-battery"
API_KEY = "sk-ant-api03-a-real-looking-key_0123456789"
JOB = [
    '"""A job."""',
    "import helpers",
    "",
    "",
    "def main(items):",
    "    total = 0",
    "    for item in items:",
    '        total += item["price"]',
    "    return total",
]


def _workflow(tmp_path: Path, **options: object) -> ResolvedWorkflow:
    cwd = tmp_path / "project"
    cwd.mkdir(exist_ok=True)
    (cwd / "job.py").write_text("\n".join(JOB) + "\n")
    table = {"name": "pricing", "script": "project/job.py", "cwd": "project", **options}
    (workflow,) = resolve(tmp_path, settings(tmp_path), table)
    return workflow


def _traceback(cwd: Path, line: int = 8, *, extra: tuple[str, ...] = ()) -> list[str]:
    return [
        "Traceback (most recent call last):",
        '  File "/usr/lib/python3.12/runpy.py", line 88, in _run_code',
        "    exec(code, run_globals)",
        *extra,
        f'  File "{cwd}/job.py", line {line}, in main',
        '    total += item["price"]',
        "KeyError: 'price'",
    ]


def _at(hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 11, 26, hour, minute, tzinfo=UTC)


def _event(kind: str, detail: str, when: datetime) -> EventRecord:
    return EventRecord(when, "pricing", kind, detail)


def _pack(
    tmp_path: Path,
    workflow: ResolvedWorkflow,
    log: list[str],
    events: list[EventRecord] | None = None,
    *,
    budget: int = DEFAULT_BUDGET,
) -> EvidencePack:
    log_path = tmp_path / "pricing.log"
    log_path.write_text("\n".join(log) + "\n")
    status = WorkflowStatus(name="pricing", state="crashed", exit_code=1, last_error="KeyError")
    crash = [_event("crashed", "exit code 1", _at(12, 5)), _event("started", "pid 1", _at(12))]
    return build_pack(
        workflow=workflow,
        status=status,
        events=crash if events is None else events,
        log_path=log_path,
        redactor=Redactor([API_KEY]),
        budget=budget,
    )


def _texts(pack: EvidencePack) -> str:
    return "\n".join(item.text for item in pack.items)


def test_log_items_cite_their_line_and_source_items_their_file_line(tmp_path: Path) -> None:
    workflow = _workflow(tmp_path)
    log = ["starting", "working", *_traceback(workflow.cwd)]
    pack = _pack(tmp_path, workflow, log)
    for number, line in enumerate(log, start=1):
        item = pack.item(f"log:{number}")
        assert item is not None
        assert item.kind == "log"
        assert item.text == line
    for number in range(5, 10):
        source = pack.item(f"job.py:{number}")
        assert source is not None
        assert source.text == JOB[number - 1]
    assert pack.item("state") is not None
    assert pack.item("config") is not None
    event = pack.item("event:1")
    assert event is not None
    assert event.text.endswith("crashed: exit code 1")


def test_source_is_read_only_from_the_workflows_own_files(tmp_path: Path) -> None:
    workflow = _workflow(tmp_path)
    venv = workflow.cwd / ".venv" / "lib"
    venv.mkdir(parents=True)
    (venv / "lib.py").write_text("LIBRARY_LINE\n" * 10)
    frame = (f'  File "{venv}/lib.py", line 3, in call', "    LIBRARY_LINE")
    pack = _pack(tmp_path, workflow, _traceback(workflow.cwd, extra=frame))
    assert not [item for item in pack.items if item.kind == "source" and "lib" in item.id]
    assert not [item for item in pack.items if "runpy" in item.id]
    assert [item for item in pack.items if item.id.startswith("job.py:")]


def test_a_deny_listed_file_named_in_a_traceback_is_not_read(tmp_path: Path) -> None:
    workflow = _workflow(tmp_path)
    for name in ("secret_settings.py", ".env", "api_key.py"):
        (workflow.cwd / name).write_text("SENTINEL = 'never read'\n" * 5)
    frames = tuple(
        line
        for name in ("secret_settings.py", ".env", "api_key.py")
        for line in (f'  File "{workflow.cwd / name}", line 2, in load', "    x()")
    )
    pack = _pack(tmp_path, workflow, _traceback(workflow.cwd, extra=frames))
    assert "never read" not in _texts(pack)
    assert {item.id.split(":")[0] for item in pack.items if item.kind == "source"} == {"job.py"}


def test_an_env_value_never_appears_in_any_item(tmp_path: Path) -> None:
    workflow = _workflow(tmp_path, env={"DB_PASSWORD": ENV_SECRET})
    _git_repo(workflow.cwd)
    (workflow.cwd / "job.py").write_text(f"# {ENV_SECRET}\n" + "\n".join(JOB[1:]) + "\n")
    _commit(workflow.cwd, f"use {ENV_SECRET}", _at(11))
    log = [f"connecting with {ENV_SECRET}", *_traceback(workflow.cwd)]
    pack = _pack(tmp_path, workflow, log)
    assert {item.kind for item in pack.items} >= {"log", "source", "git", "config"}
    assert ENV_SECRET not in _texts(pack)
    config = pack.item("config")
    assert config is not None
    assert f'DB_PASSWORD = "{REDACTED}"' in config.text


def test_a_secret_in_a_log_line_is_redacted(tmp_path: Path) -> None:
    workflow = _workflow(tmp_path)
    log = [
        f"DEBUG headers {{'x-api-key': '{API_KEY}'}}",
        "DEBUG https://api.telegram.org/bot7012345678:AAHfake-token_for-tests-0123456789abcdef/x",
        "ERROR token=abcdef123456 rejected",
    ]
    pack = _pack(tmp_path, workflow, log)
    texts = _texts(pack)
    assert API_KEY not in texts
    assert "AAHfake-token" not in texts
    assert "abcdef123456" not in texts
    assert texts.count(REDACTED) >= 3


def test_the_diff_since_the_last_healthy_start_and_the_last_commits(tmp_path: Path) -> None:
    workflow = _workflow(tmp_path)
    _git_repo(workflow.cwd)
    (workflow.cwd / "job.py").write_text("\n".join(JOB).replace("price", "cost") + "\n")
    (workflow.cwd / ".env").write_text("DB_PASSWORD=in-the-env-file\n")
    _commit(workflow.cwd, "read cost instead of price", _at(12, 30))
    head = _git(workflow.cwd, "rev-parse", "HEAD").strip()
    events = [
        _event("crashed", "exit code 1", _at(13, 5)),
        _event("started", "pid 3", _at(13)),
        _event("restarted", "after crash, attempt 1/20 as pid 3", _at(13)),
        _event("crashed", "exit code 1", _at(12, 45)),
        _event("started", "pid 2", _at(12, 40)),  # the first run of the new code
        _event("recovered", "healthy again after 30s", _at(11, 30)),
        _event("started", "pid 1", _at(11)),
    ]
    pack = _pack(tmp_path, workflow, _traceback(workflow.cwd), events)
    commits = pack.item("git:log")
    diff = pack.item("git:diff")
    assert commits is not None
    assert "read cost instead of price" in commits.text
    assert "first version" in commits.text
    assert diff is not None
    assert '+        total += item["cost"]' in diff.text
    assert '-        total += item["price"]' in diff.text
    assert "in-the-env-file" not in _texts(pack)
    assert pack.code_version == head


def test_the_code_version_without_git_is_a_digest_of_the_script(tmp_path: Path) -> None:
    workflow = _workflow(tmp_path)
    first = _pack(tmp_path, workflow, ["x"]).code_version
    (workflow.cwd / "job.py").write_text("changed\n")
    second = _pack(tmp_path, workflow, ["x"]).code_version
    assert first is not None
    assert first.startswith("sha256:")
    assert first != second


def test_the_same_traceback_in_three_runs_has_one_signature_counted_three_times(
    tmp_path: Path,
) -> None:
    workflow = _workflow(tmp_path)
    log: list[str] = []
    for run, line in enumerate((8, 9, 8)):
        log += [f"--- 2026-11-26T12:0{run}:00Z supervisor: starting python job.py ---"]
        log += _traceback(workflow.cwd, line)
        log += [f"--- 2026-11-26T12:0{run}:05Z supervisor: exited: code 1 ---"]
    pack = _pack(tmp_path, workflow, log)
    assert pack.signature == "KeyError@runpy.py:_run_code>job.py:main"
    assert pack.failures_with_signature == 3


def test_a_failure_without_traceback_is_signed_by_how_it_ended(tmp_path: Path) -> None:
    workflow = _workflow(tmp_path)
    killed = [
        _event("crashed", "killed by SIGKILL", _at(12, 1)),
        _event("crashed", "killed by SIGKILL", _at(12)),
    ]
    hung = [_event("hung", "no heartbeat for 301s (threshold 300s)", _at(12))]
    exited = [_event("crashed", "exit code 3", _at(12))]
    # a traceback in the log does not hide that the process was killed
    assert _pack(tmp_path, workflow, _traceback(workflow.cwd), killed).signature == "signal:SIGKILL"
    assert _pack(tmp_path, workflow, ["x"], killed).failures_with_signature == 2
    assert _pack(tmp_path, workflow, ["x"], hung).signature == "hang"
    assert _pack(tmp_path, workflow, ["x"], exited).signature == "exit:3"


def test_the_budget_trims_the_logs_middle_and_never_the_error_lines(tmp_path: Path) -> None:
    workflow = _workflow(tmp_path)
    noise = [f"INFO step {n} of a long and chatty run, nothing wrong here" for n in range(1500)]
    error = _traceback(workflow.cwd)
    log = [*noise[:700], "ERROR upstream said no", *noise[700:], *error]
    pack = _pack(tmp_path, workflow, log, budget=4000)
    texts = [item.text for item in pack.items]
    assert sum(len(text) for text in texts) <= 4000
    assert "ERROR upstream said no" in texts
    assert all(line in texts for line in error)
    assert noise[-1] in texts  # the end of the tail goes last


def _git(cwd: Path, *args: str, when: datetime | None = None) -> str:
    stamp = (when or _at(10)).isoformat()
    env = {**os.environ, "GIT_AUTHOR_DATE": stamp, "GIT_COMMITTER_DATE": stamp}
    done = subprocess.run(
        ["git", "-c", "user.name=Test", "-c", "user.email=t@example.com", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout


def _commit(cwd: Path, message: str, when: datetime) -> None:
    _git(cwd, "add", "-A")
    _git(cwd, "commit", "-q", "-m", message, when=when)


def _git_repo(cwd: Path) -> None:
    _git(cwd, "init", "-q", "-b", "main")
    _commit(cwd, "first version", _at(10))
