"""The workflows TOML and the supervisor settings, read from real files and env."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from supervisor.config import ConfigError, WorkflowConfig, load_config, load_workflows
from supervisor.settings import SupervisorSettings

FULL = """
[[workflows]]
name = "api"
command = ["./serve.sh", "--port", "8080"]
cwd = "svc"
db = "state/api.db"
env = { MODE = "prod" }
input = { topic = "x", n = 2 }
autostart = false
restart = "always"
hang_threshold_seconds = 60
restart_backoff_seconds = [1, 2.5]
max_restart_attempts = 3
watch = true
diagnose = "auto"

[[workflows]]
name = "review.loop-1"
script = "flows/review.py"
"""


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _settings(tmp_path: Path, config: Path | None = None) -> SupervisorSettings:
    return SupervisorSettings(config=config or Path("supervisor.toml"), data_dir=tmp_path / "data")


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A project directory, not the cwd, holding the TOML and what it names."""
    root = tmp_path / "project"
    _write(root / "svc" / "serve.sh", "#!/bin/sh\n")
    _write(root / "flows" / "review.py", "")
    return root


def test_full_file_resolves_both_kinds(tmp_path: Path, project: Path) -> None:
    path = _write(project / "supervisor.toml", FULL)
    settings = _settings(tmp_path, path)
    api, review = load_config(path, settings)

    assert api.name == "api"
    assert api.cwd == project / "svc"
    assert api.db == project / "state" / "api.db"
    assert api.argv[:3] == ("./serve.sh", "--port", "8080")
    assert api.argv[3] == "--input"
    assert json.loads(api.argv[4]) == {"topic": "x", "n": 2}
    assert api.env == {"MODE": "prod", "WORKFLOW_DB": str(api.db), "WORKFLOW_NAME": "api"}
    assert api.watch_paths == (project / "svc" / "serve.sh",)
    assert api.autostart is False
    assert api.restart == "always"
    assert api.hang_threshold_seconds == 60
    assert api.restart_backoff_seconds == (1.0, 2.5)
    assert api.max_restart_attempts == 3
    assert api.script is None
    assert api.diagnose == "auto"
    assert api.config.input == {"topic": "x", "n": 2}

    script = project / "flows" / "review.py"
    assert review.script == script
    assert review.cwd == project
    assert review.db == tmp_path / "data" / "state" / "review.loop-1.db"
    assert review.argv == (
        sys.executable,
        "-m",
        "workflows",
        "run",
        str(script),
        "--db",
        str(review.db),
    )
    assert review.watch_paths == (script,)
    assert review.restart == "on-failure"
    assert review.hang_threshold_seconds == 300
    assert review.restart_backoff_seconds == (5.0, 30.0, 120.0, 600.0)
    assert review.max_restart_attempts == 20
    assert review.autostart is True
    assert review.diagnose == "off"


def test_relative_paths_resolve_against_toml_dir_not_cwd(
    tmp_path: Path, project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _write(project / "supervisor.toml", FULL)
    monkeypatch.chdir(project / "svc")
    workflows = load_config(Path("..") / "supervisor.toml", _settings(tmp_path))
    assert [w.cwd for w in workflows] == [project / "svc", project]
    assert workflows[0].db == project / "state" / "api.db"
    assert workflows[1].script == project / "flows" / "review.py"


def test_script_input_and_watch_flags(tmp_path: Path, project: Path) -> None:
    path = _write(
        project / "supervisor.toml",
        '[[workflows]]\nname = "a"\nscript = "flows/review.py"\ninput = {k = [1]}\nwatch = false\n'
        '[[workflows]]\nname = "b"\ncommand = ["python", "flows/review.py"]\n'
        '[[workflows]]\nname = "c"\ncommand = ["python", "flows/review.py", "/bin/sh"]\n'
        "watch = true\n",
    )
    a, b, c = load_config(path, _settings(tmp_path))
    assert a.argv[-2:] == ("--input", '{"k": [1]}')
    assert a.argv[-4:-2] == ("--db", str(a.db))
    assert a.watch_paths == ()
    assert b.watch_paths == ()
    assert c.watch_paths == (project / "flows" / "review.py",)


def test_missing_default_file_gives_the_demo(tmp_path: Path) -> None:
    settings = SupervisorSettings(data_dir=tmp_path / "data")
    (demo,) = load_workflows(settings)
    assert demo.name == "demo"
    assert demo.script is not None
    assert demo.script.parts[-3:] == ("workflows", "examples", "demo.py")
    assert demo.config.input is None
    assert demo.autostart is True
    assert demo.cwd == tmp_path
    assert "--input" not in demo.argv
    assert demo.db == tmp_path / "data" / "state" / "demo.db"


def test_missing_explicit_file_is_an_error(tmp_path: Path) -> None:
    settings = _settings(tmp_path, Path("elsewhere.toml"))
    with pytest.raises(ConfigError, match=r"^elsewhere\.toml: file not found$"):
        load_workflows(settings)


def test_existing_default_file_is_read(tmp_path: Path) -> None:
    _write(tmp_path / "supervisor.toml", '[[workflows]]\nname = "x"\ncommand = ["true"]\n')
    assert [w.name for w in load_workflows(_settings(tmp_path))] == ["x"]


ONE = '[[workflows]]\nname = "api"\ncommand = ["true"]\n'


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            ONE + "hang_treshold_seconds = 5\n",
            "supervisor.toml: workflow 'api' key 'hang_treshold_seconds': unknown key",
        ),
        (
            ONE + '[[workflows]]\ncommand = ["true"]\n',
            "supervisor.toml: workflow #2 key 'name': missing",
        ),
        (
            '[[workflows]]\nname = "bad name/"\ncommand = ["true"]\n',
            "supervisor.toml: workflow #1 key 'name': must be 1-48 letters, digits",
        ),
        (
            '[[workflows]]\nname = ""\ncommand = ["true"]\n',
            "supervisor.toml: workflow #1 key 'name':",
        ),
        (ONE + "hang_threshold_seconds = 0\n", "workflow 'api' key 'hang_threshold_seconds': "),
        (ONE + 'restart = "sometimes"\n', "workflow 'api' key 'restart': "),
        (
            ONE + 'diagnose = "on"\n',
            "supervisor.toml: workflow 'api' key 'diagnose': Input should be 'auto' or 'off'",
        ),
        (ONE + "restart_backoff_seconds = []\n", "workflow 'api' key 'restart_backoff_seconds': "),
        (ONE + "restart_backoff_seconds = [1, -1]\n", "key 'restart_backoff_seconds[1]': "),
        (ONE + "max_restart_attempts = -1\n", "workflow 'api' key 'max_restart_attempts': "),
        (ONE + "env = { A = 1 }\n", "workflow 'api' key 'env.A': "),
        ('[[workflows]]\nname = "api"\ncommand = []\n', "workflow 'api' key 'command': "),
        ('[[workflows]]\nname = "api"\ncommand = [""]\n', "workflow 'api' key 'command[0]': "),
        (
            '[[workflows]]\nname = "api"\n',
            "supervisor.toml: workflow 'api': needs one of 'command' or 'script', got neither",
        ),
        (
            ONE + 'script = "x.py"\n',
            "supervisor.toml: workflow 'api': needs one of 'command' or 'script', got both",
        ),
        (
            ONE + ONE,
            "supervisor.toml: workflow #2 key 'name': duplicate name 'api' (also workflow #1)",
        ),
        ('[[workflows]]\nname = "api"\nscript = "nope.py"\n', "workflow 'api' key 'script': file"),
        (ONE + 'cwd = "nowhere"\n', "workflow 'api' key 'cwd': not a directory"),
        (ONE + "debug = true\n", "supervisor.toml: workflow 'api' key 'debug': unknown key"),
        ("workflow = []\n" + ONE, "supervisor.toml: key 'workflow': unknown top-level key"),
        ("workflows = 3\n", "supervisor.toml: key 'workflows': must be"),
        ("workflows = [1]\n", "supervisor.toml: workflow #1: must be"),
        (
            '[[workflows]]\nname = "api"\ncommand = ["true",,]\n',
            "supervisor.toml: line 3: Invalid value",
        ),
        (ONE + 'name = "b"\n', "supervisor.toml: line 4: Cannot overwrite a value"),
        ('[[workflows]]\nname = "api"\ncommand = ["true"\n', "supervisor.toml: Unclosed array"),
        ('[[workflows]]\nname = "api\n', "supervisor.toml: line 2: "),
    ],
)
def test_errors_are_one_line_naming_file_workflow_key(
    tmp_path: Path, text: str, expected: str
) -> None:
    path = _write(tmp_path / "supervisor.toml", text)
    with pytest.raises(ConfigError) as caught:
        load_config(Path("supervisor.toml"), _settings(tmp_path, path))
    message = str(caught.value)
    assert "\n" not in message
    assert expected in message
    assert message.startswith("supervisor.toml: ")


def test_file_not_found_message_names_resolved_script(tmp_path: Path) -> None:
    path = _write(tmp_path / "supervisor.toml", '[[workflows]]\nname = "a"\nscript = "s.py"\n')
    with pytest.raises(ConfigError, match=r"file not found: .*s\.py$"):
        load_config(path, _settings(tmp_path))


def test_unreadable_and_non_utf8_files(tmp_path: Path) -> None:
    (tmp_path / "dir.toml").mkdir()
    with pytest.raises(ConfigError, match=r"^dir\.toml: cannot read: "):
        load_config(Path("dir.toml"), _settings(tmp_path))
    (tmp_path / "bin.toml").write_bytes(b"\xff\xfe name")
    with pytest.raises(ConfigError, match=r"^bin\.toml: not UTF-8 text$"):
        load_config(Path("bin.toml"), _settings(tmp_path))


def test_empty_file_means_no_workflows(tmp_path: Path) -> None:
    _write(tmp_path / "supervisor.toml", "# nothing yet\n")
    assert load_config(Path("supervisor.toml"), _settings(tmp_path)) == []


def test_workflow_config_is_frozen() -> None:
    config = WorkflowConfig(name="a", command=["true"])
    with pytest.raises(ValueError, match="frozen"):
        config.name = "b"  # type: ignore[misc]


def test_settings_defaults_and_paths(tmp_path: Path) -> None:
    settings = SupervisorSettings()
    assert settings.config == Path("supervisor.toml")
    assert settings.check_interval_seconds == 5.0
    assert settings.status_interval_seconds == 0.0  # daily, at ALERT_DIGEST_AT
    data = tmp_path / ".supervisor"
    assert settings.control_db_url == f"sqlite:///{data / 'control.db'}"
    assert (settings.logs_dir, settings.run_dir, settings.state_dir) == (
        data / "logs",
        data / "run",
        data / "state",
    )
    assert SupervisorSettings(db_url="postgresql://h/db").control_db_url == "postgresql://h/db"


def test_settings_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SUPERVISOR_CHECK_INTERVAL_SECONDS", "0.2")
    monkeypatch.setenv("SUPERVISOR_STATUS_INTERVAL_SECONDS", "0")
    monkeypatch.setenv("SUPERVISOR_CONFIG", "/etc/flows.toml")
    monkeypatch.setenv("SUPERVISOR_LOG_BACKUPS", "7")
    settings = SupervisorSettings()
    assert settings.check_interval_seconds == 0.2
    assert settings.status_interval_seconds == 0
    assert settings.config == Path("/etc/flows.toml")
    assert settings.log_backups == 7


def test_settings_from_dotenv_in_cwd_and_env_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / ".env").write_text(
        "TELEGRAM_BOT_TOKEN=123:abc\n"
        "SUPERVISOR_DATA_DIR=/var/lib/sup\n"
        "SUPERVISOR_ERROR_POLL_SECONDS=0.1\n"
        "SUPERVISOR_DB_URL=sqlite:////tmp/x.db\n"
    )
    settings = SupervisorSettings()
    assert settings.data_dir == Path("/var/lib/sup")
    assert settings.error_poll_seconds == 0.1
    assert settings.control_db_url == "sqlite:////tmp/x.db"
    monkeypatch.setenv("SUPERVISOR_ERROR_POLL_SECONDS", "2")
    assert SupervisorSettings().error_poll_seconds == 2


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("SUPERVISOR_CHECK_INTERVAL_SECONDS", "0"),
        ("SUPERVISOR_STATUS_INTERVAL_SECONDS", "-1"),
        ("SUPERVISOR_ERROR_POLL_SECONDS", "0"),
    ],
)
def test_settings_refuse_bad_values(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValueError, match=variable.removeprefix("SUPERVISOR_").lower()):
        SupervisorSettings()
