"""Secrets never leave the machine: no request body the Messages endpoint receives holds one.

The pack, the log the model greps, and the files it reads under ``cwd`` all
hold the bot token, the API key and a workflow's ``env`` value; a ``.env``
in ``cwd`` holds a value shaped like nothing, which only the deny-list
keeps out. Every body the stand-in endpoint recorded, count_tokens and
tool rounds included, is searched for each of them.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from supervisor.diagnosis.tools import Sources
from supervisor.diagnosis.types import EvidenceItem
from supervisor.secrets import Redactor
from tests.diagnosis_rig import API_KEY, GOOD_ANSWER, diagnoser, pack, rules_verdict
from tests.fakes.messages_api import FakeMessagesAPI, tool_results

pytestmark = pytest.mark.timeout(30)

BOT_TOKEN = "7123456789:AAFakeTokenForTestsOnly_abcdefghijklmnop"
ENV_VALUE = "hunter2-correct-horse"  # a value of the workflow's `env`
DOTENV_VALUE = "swordfish-plain-words"  # in cwd/.env, shaped like no secret


@pytest.fixture
def api() -> Iterator[FakeMessagesAPI]:
    with FakeMessagesAPI() as server:
        yield server


def workflow_dir(tmp_path: Path) -> Path:
    cwd = tmp_path / "repo"
    cwd.mkdir()
    (cwd / ".env").write_text(f"MOTD={DOTENV_VALUE}\n")
    (cwd / "settings.py").write_text(f'DSN = "postgres://etl:{ENV_VALUE}@db/etl"  # swordfish\n')
    return cwd


async def test_no_secret_reaches_the_endpoint(api: FakeMessagesAPI, tmp_path: Path) -> None:
    cwd = workflow_dir(tmp_path)
    log = tmp_path / "etl.log"
    log.write_text(f"connecting with {BOT_TOKEN}\nauth {API_KEY}\npassword {ENV_VALUE}\n")
    leaky = pack(
        EvidenceItem("config", "config", f"env: DB_PASSWORD={ENV_VALUE} TOKEN={BOT_TOKEN}"),
        EvidenceItem("log:3", "log", f"Authorization: x-api-key {API_KEY}"),
    )
    api.queue_tool_use("log_lines", {"pattern": "."}, tool_id="toolu_1")
    api.queue_tool_use("read", {"file_path": ".env"}, tool_id="toolu_2")
    api.queue_tool_use("grep", {"pattern": "swordfish"}, tool_id="toolu_3")
    api.queue_tool_use("read", {"file_path": "settings.py"}, tool_id="toolu_4")
    api.queue_reply(GOOD_ANSWER)
    why = diagnoser(api, tmp_path, redactor=Redactor([BOT_TOKEN]))
    verdict = await why.diagnose(
        leaky, rules_verdict(), sources=Sources(log_path=log, cwd=cwd), secrets=(ENV_VALUE,)
    )
    assert verdict.source == "model"
    bodies = [json.dumps(request, ensure_ascii=False) for request in api.requests]
    assert len(bodies) >= 6  # count_tokens, four tool rounds, the answer
    for secret in (BOT_TOKEN, API_KEY, ENV_VALUE, DOTENV_VALUE):
        assert not [body for body in bodies if secret in body], secret
    results = {r["tool_use_id"]: json.dumps(r) for r in tool_results(api.requests[-1])}
    assert "never read" in results["toolu_2"]
    assert "settings.py" in results["toolu_3"]  # the search worked, the .env line was hidden
    assert "[REDACTED]" in results["toolu_4"]
