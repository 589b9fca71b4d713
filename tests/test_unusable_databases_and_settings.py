"""A corrupt database or a bad setting at start is one clear line and exit 2, never a traceback."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from bot.settings import BotSettings
from supervisor.knownsettings import RESERVED, known_names, unknown_setting
from workflows.templates import example_path

pytestmark = pytest.mark.timeout(30)
GARBAGE = b"this is not a database " * 200


def run(
    *args: str, env: dict[str, str] | None = None, cwd: Path
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args],
        cwd=cwd,
        env={"PATH": "/usr/bin:/bin", **(env or {})},
        capture_output=True,
        text=True,
        timeout=20,
        stdin=subprocess.DEVNULL,
        check=False,
    )


def assert_one_line(result: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    error_lines = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(error_lines) == 1, result.stderr
    for needle in needles:
        assert needle in error_lines[0]


@pytest.mark.parametrize("command", [("-m", "supervisor", "run"), ("-m", "bot", "--console")])
def test_a_corrupt_control_db_is_refused_before_anything_starts(
    tmp_path: Path, command: tuple[str, ...]
) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "control.db").write_bytes(GARBAGE)
    result = run(*command, env={"SUPERVISOR_DATA_DIR": "data"}, cwd=tmp_path)
    assert_one_line(result, "control DB", "control.db", "SUPERVISOR_DB_URL")


def test_a_corrupt_workflow_db_is_refused(tmp_path: Path) -> None:
    (tmp_path / "bad.db").write_bytes(GARBAGE)
    result = run(
        "-m", "workflows", "run", str(example_path("demo")), "--db", "bad.db", cwd=tmp_path
    )
    assert_one_line(result, "bad.db", "--db")


@pytest.mark.parametrize(
    ("variable", "command"),
    [
        ("SUPERVISOR_CHECK_INTERVAL_SECONDS", ("-m", "supervisor", "run")),
        ("SUPERVISOR_CHECK_INTERVAL_SECONDS", ("-m", "bot", "--console")),
        ("TELEGRAM_CHAT_ID", ("-m", "bot")),
    ],
)
def test_a_bad_setting_names_its_variable(
    tmp_path: Path, variable: str, command: tuple[str, ...]
) -> None:
    result = run(*command, env={variable: "not-a-number"}, cwd=tmp_path)
    assert_one_line(result, variable)


TYPOS = [
    # The bot reads TELEGRAM_*: a typo there must not silently open it to a whole group.
    (("-m", "bot", "--console"), "TELEGRAM_ALOWED_USER_IDS", "TELEGRAM_ALLOWED_USER_IDS"),
    (
        ("-m", "supervisor", "run"),
        "SUPERVISOR_CHECK_INTERVALL_SECONDS",
        "SUPERVISOR_CHECK_INTERVAL_SECONDS",
    ),
]


@pytest.mark.parametrize(("command", "typo", "meant"), TYPOS)
def test_an_unknown_setting_in_the_environment_is_refused_with_a_suggestion(
    tmp_path: Path, command: tuple[str, ...], typo: str, meant: str
) -> None:
    result = run(*command, env={typo: "4242"}, cwd=tmp_path)
    assert_one_line(result, f"unknown setting {typo} (did you mean {meant}?)")


@pytest.mark.parametrize(("command", "typo", "meant"), TYPOS)
def test_an_unknown_setting_in_dotenv_is_refused_with_a_suggestion(
    tmp_path: Path, command: tuple[str, ...], typo: str, meant: str
) -> None:
    (tmp_path / ".env").write_text(f"# shared by both programs\n{typo.lower()}=4242\n")
    result = run(*command, cwd=tmp_path)
    assert_one_line(result, f"unknown setting {typo.lower()} (did you mean {meant}?)")


# One .env for both programs: the bot's names, the direct ones and names reserved for
# features being built are all fine, also for the supervisor that reads none of the bot's.
SHARED_DOTENV = "".join(
    f"{name}={value}\n"
    for name, value in [
        ("TELEGRAM_BOT_TOKEN", "123:not-a-real-token"),
        ("TELEGRAM_ALLOWED_USER_IDS", "4242"),
        ("HEALTHCHECK_PING_SECONDS", "30"),
        ("SUPERVISOR_CHECK_INTERVAL_SECONDS", "1"),
        ("WORKFLOW_HEARTBEAT_SECONDS", "5"),
        *((name, "1") for name in sorted(RESERVED)),
    ]
)


def test_unknown_setting_names_the_first_suggests_and_lists_the_rest() -> None:
    known = {"SUPERVISOR_CONFIG", "SUPERVISOR_DATA_DIR", "WORKFLOW_DB"}
    assert unknown_setting(["SUPERVISOR_CONFIG", "PATH", "workflow_db"], known) is None
    assert unknown_setting(["SUPERVISOR_DATADIR", "WORKFLOW_ZZZ"], known) == (
        "unknown setting SUPERVISOR_DATADIR (did you mean SUPERVISOR_DATA_DIR?); "
        "also unknown: WORKFLOW_ZZZ"
    )
    assert unknown_setting(["FLEET_X"], known) is None  # no FLEET_ name known: not ours to judge
    assert unknown_setting(["SUPERVISOR_ZZZZZZZZZZZZZZZZ"], known) == (
        "unknown setting SUPERVISOR_ZZZZZZZZZZZZZZZZ (no setting has a name like it)"
    )


def test_a_correct_configuration_still_starts_the_console_bot(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text(SHARED_DOTENV)
    result = subprocess.run(
        [sys.executable, "-m", "bot", "--console"],
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "SUPERVISOR_FAULT": "none"},
        input="/status\n",
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "1 workflow" in result.stdout


def test_a_correct_configuration_still_starts_the_headless_supervisor(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text(SHARED_DOTENV)
    headless = subprocess.Popen(
        [sys.executable, "-m", "supervisor", "run"],
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "WORKFLOW_DB": "stray.db"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert headless.stdout is not None
        assert "demo started" in headless.stdout.readline()  # blocks until the first event
    finally:
        headless.send_signal(signal.SIGTERM)
        _, err = headless.communicate(timeout=15)
    assert headless.returncode == 0, err


def test_every_name_in_env_example_is_known() -> None:
    example = (Path(__file__).resolve().parents[1] / ".env.example").read_text()
    names = re.findall(r"^(?:# )?([A-Z][A-Z0-9_]+)=", example, re.MULTILINE)
    assert "HEALTHCHECK_PING_URL" in names
    assert unknown_setting(names, known_names([BotSettings])) is None
