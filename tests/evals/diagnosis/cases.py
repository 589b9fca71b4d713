"""The evaluation cases of ``/why``, loaded and turned into evidence packs by the real builder.

Each case is a directory: ``state.json`` (a ``WorkflowStatus``),
``events.json`` (newest first), ``log.txt``, ``workflow.toml`` (one
``[[workflows]]`` table; ``cwd = "cwd"``), optional ``cwd/`` (the
workflow's files) and ``expected.toml`` (``category``, and ``must`` /
``must_not`` phrases for the verdict's text). ``{cwd}`` in the log and the
state stands for the case's working directory, which is copied to a
temporary place first so git and the source reader see only the case.

Used by ``tests/test_diagnosis_rules_eval.py`` and by the whole-path bench.
"""

from __future__ import annotations

import json
import shutil
import tomllib
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from supervisor.config import load_config
from supervisor.diagnosis.evidence import build_pack
from supervisor.diagnosis.types import Category, EvidencePack, Verdict
from supervisor.events import EventRecord, WorkflowStatus
from supervisor.secrets import Redactor
from supervisor.settings import SupervisorSettings

CASES_DIR = Path(__file__).parent / "cases"
# Stand-ins for the control plane's own secrets: no case may ever show them.
BOT_TOKEN = "7012345678:AAEvalsOnly-not-a-real-token_abcdefghij"
API_KEY = "sk-ant-api03-evals-only-not-a-real-key-0123456789"


@dataclass(frozen=True, slots=True)
class Case:
    name: str
    path: Path
    category: Category
    must: tuple[str, ...]  # phrases a right verdict contains (case-insensitive)
    must_not: tuple[str, ...]  # phrases no verdict may contain (secrets, wrong causes)


def load_cases(root: Path = CASES_DIR) -> list[Case]:
    """Every case under ``root``, by name."""
    cases = []
    for path in sorted(p for p in root.iterdir() if (p / "expected.toml").is_file()):
        expected = tomllib.loads((path / "expected.toml").read_text())
        cases.append(
            Case(
                name=path.name,
                path=path,
                category=expected["category"],
                must=tuple(expected.get("must", ())),
                must_not=tuple(expected.get("must_not", ())),
            )
        )
    return cases


def build_case_pack(case: Case, workdir: Path) -> EvidencePack:
    """The case's evidence pack, built by ``build_pack`` from files under ``workdir``."""
    cwd = workdir / "cwd"
    if (case.path / "cwd").is_dir():
        shutil.copytree(case.path / "cwd", cwd)
    else:
        cwd.mkdir(parents=True)
    toml = workdir / "supervisor.toml"
    shutil.copy(case.path / "workflow.toml", toml)
    settings = SupervisorSettings(data_dir=workdir / "data", _env_file=None)
    (workflow,) = load_config(toml, settings)
    log = workdir / "workflow.log"
    log.write_text(_placed(case.path / "log.txt", cwd))
    state = json.loads(_placed(case.path / "state.json", cwd))
    events = json.loads(_placed(case.path / "events.json", cwd))
    return build_pack(
        workflow=workflow,
        status=WorkflowStatus(name=workflow.name, **state),
        events=[_event(workflow.name, event) for event in events],
        log_path=log,
        redactor=Redactor([BOT_TOKEN, API_KEY]),
    )


def verdict_text(verdict: Verdict) -> str:
    """Everything a person reads in a verdict, for the phrase checks."""
    quotes = [quote.quote for quote in verdict.evidence]
    return "\n".join([verdict.cause, *verdict.next_steps, *quotes])


def _placed(path: Path, cwd: Path) -> str:
    return path.read_text().replace("{cwd}", str(cwd))


def _event(workflow: str, raw: dict[str, Any]) -> EventRecord:
    return EventRecord(datetime.fromisoformat(raw["time"]), workflow, raw["kind"], raw["detail"])
