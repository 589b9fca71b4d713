"""``diagnose = "auto"``: a give-up is followed by its diagnosis, unasked, as a quiet message.

Through the real supervisor with real processes and no ``ANTHROPIC_API_KEY``,
so the diagnosis is the rules' verdict and nothing leaves the machine.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.alerts import AlertComposer, severity
from supervisor.agentsettings import AgentSettings
from supervisor.diagnosis.diagnose import NOT_CONFIGURED
from supervisor.diagnosis.types import Quote, Usage, Verdict
from supervisor.eventcodec import decode_event, encode_event
from supervisor.events import Diagnosed, GaveUp
from tests.supervisor_harness import collect, resolve, running, settings, table, wait_for_event
from tests.test_message_rendering import NAME, NOW, assert_valid

pytestmark = pytest.mark.timeout(20)
IMPORT_ERROR = [
    "Traceback (most recent call last):",
    '  File "flow.py", line 1, in <module>',
    "ModuleNotFoundError: No module named 'pandas'",
]
NO_CLAUDE = AgentSettings(_env_file=None, anthropic_api_key=None)


def failing(tmp_path: Path, name: str, **options: object) -> dict[str, object]:
    """A workflow that prints an import error and exits 1 at once; no restart is allowed."""
    plan = {"beats": 0, "print": IMPORT_ERROR, "exit": 1}
    return table(tmp_path, name, plan=plan, max_restart_attempts=0, **options)


async def test_a_give_up_with_diagnose_auto_is_followed_by_its_diagnosis(
    tmp_path: Path,
) -> None:
    conf = settings(tmp_path)
    flows = resolve(tmp_path, conf, failing(tmp_path, "auto", diagnose="auto"))
    async with running(conf, flows, agent=NO_CLAUDE) as (_sup, sub):
        gave_up = await wait_for_event(sub, "gave_up", "auto")
        diagnosed = await wait_for_event(sub, "diagnosed", "auto")
        assert isinstance(gave_up, GaveUp)
        assert isinstance(diagnosed, Diagnosed)
        assert diagnosed.incident == gave_up.incident
        assert diagnosed.id is not None  # recorded in the control DB like any event
        verdict = diagnosed.verdict
        assert (verdict.workflow, verdict.source, verdict.category) == (
            "auto",
            "rules",
            "environment",
        )
        assert verdict.note == NOT_CONFIGURED
        assert not [e for e in await collect(sub, 1.0) if e.kind == "diagnosed"]  # just once


async def test_the_default_workflow_gives_up_without_a_diagnosis(tmp_path: Path) -> None:
    conf = settings(tmp_path)
    async with running(
        conf, resolve(tmp_path, conf, failing(tmp_path, "plain")), agent=NO_CLAUDE
    ) as (
        _sup,
        sub,
    ):
        await wait_for_event(sub, "gave_up", "plain")
        assert not [e for e in await collect(sub, 1.0) if e.kind == "diagnosed"]


VERDICT = Verdict(
    workflow=NAME,
    cause="pandas is not installed in the workflow's environment",
    category="environment",
    confidence="high",
    evidence=(Quote(evidence_id="log:3", quote="No module named 'pandas'"),),
    next_steps=("Install pandas in its venv, then /start it",),
    restart_helps=False,
    source="model",
    usage=Usage("claude-sonnet-4-6", 1200, 150, 0.006, 4.2),
)
DIAGNOSED = Diagnosed(workflow=NAME, time=NOW, incident="i1", verdict=VERDICT)


def test_the_diagnosis_reads_as_a_quiet_follow_up_of_the_give_up() -> None:
    [alert] = AlertComposer().alerts(DIAGNOSED)
    assert severity(DIAGNOSED) == "info"
    assert not alert.loud
    assert not alert.critical
    assert alert.key is None  # its own message, after the give-up's
    text = assert_valid(alert.text)
    assert text.startswith("↳ why <b>wf-Name_1.x</b> gave up\n🔎 <b>wf-Name_1.x</b>: environment")
    assert "pandas is not installed" in text
    assert "log:3: <code>No module named 'pandas'</code>" in text
    assert "claude-sonnet-4-6" in text
    assert {button.data for button in alert.buttons} >= {f"logs:{NAME}", f"evidence:{NAME}"}


def test_the_diagnosis_event_survives_the_control_db() -> None:
    assert decode_event(encode_event(DIAGNOSED)) == DIAGNOSED
