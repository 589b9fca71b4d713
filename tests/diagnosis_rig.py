"""What the /why-with-Claude tests share: a hand-made pack, the rules' verdict, a Diagnoser.

The Diagnoser runs the real anthropic SDK against ``FakeMessagesAPI``; its
spend ledger lives in a SQLite control DB under the test's ``tmp_path``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from supervisor.agentsettings import AgentSettings
from supervisor.dbengine import make_engine
from supervisor.diagnosis.diagnose import Diagnoser
from supervisor.diagnosis.types import EvidenceItem, EvidencePack, Verdict
from supervisor.secrets import Redactor
from tests.fakes.messages_api import FakeMessagesAPI

API_KEY = "sk-ant-api03-test-key-never-real-0123456789abcdefXYZ"
TRACEBACK = (
    "Traceback (most recent call last):\n"
    '  File "etl.py", line 42, in load\n'
    "    customer = row['customer_id']\n"
    "KeyError: 'customer_id'"
)


def pack(*extra: EvidenceItem) -> EvidencePack:
    """A crash of the workflow ``etl`` with a KeyError, plus ``extra`` items."""
    items = (
        EvidenceItem("state", "state", "supervisor.status=error"),
        EvidenceItem("event:7", "event", "exited with code 1"),
        EvidenceItem("log:40", "log", TRACEBACK),
        EvidenceItem("etl.py:42", "source", "    customer = row['customer_id']"),
        *extra,
    )
    return EvidencePack("etl", items, "KeyError@etl.py:42", code_version="abc123")


def rules_verdict() -> Verdict:
    return Verdict(
        workflow="etl",
        cause="A deterministic error in the workflow's code",
        category="bug",
        confidence="medium",
        evidence=(),
        next_steps=("Fix the code, then restart",),
        restart_helps=False,
        source="rules",
    )


def answer(*quotes: tuple[str, str], cause: str = "Rows lack a customer_id column") -> str:
    """A Diagnosis as the model would return it, citing ``(evidence id, quote)`` pairs."""
    return json.dumps(
        {
            "cause": cause,
            "category": "bug",
            "confidence": "high",
            "evidence": [{"evidence_id": i, "quote": q} for i, q in quotes],
            "next_steps": ["Check the input file's header"],
            "restart_helps": False,
        }
    )


GOOD_ANSWER = answer(("log:40", "KeyError: 'customer_id'"))


def settings(api: FakeMessagesAPI, **overrides: Any) -> AgentSettings:
    values: dict[str, Any] = {
        "anthropic_api_key": SecretStr(API_KEY),
        "anthropic_base_url": api.base_url,
        "agent_timeout_seconds": 20.0,
        **overrides,
    }
    return AgentSettings(_env_file=None, **values)


def diagnoser(
    api: FakeMessagesAPI, tmp_path: Path, *, redactor: Redactor | None = None, **overrides: Any
) -> Diagnoser:
    engine = make_engine(f"sqlite:///{tmp_path / 'control.db'}")
    return Diagnoser(settings(api, **overrides), engine, redactor=redactor)


def sent_items(request: dict[str, Any]) -> dict[str, str]:
    """The evidence items the first message of ``request`` carries, text by id."""
    content = request["messages"][0]["content"]
    items = json.loads(content[content.index("{") :])["items"]
    return {item["id"]: item["text"] for item in items}
