"""The workflows TOML: validated strictly, resolved once, reported in one line.

A typo in a key must stop the supervisor at start, not leave a workflow
silently running with a default; and the complaint has to fit in a log line
or a chat message, so every problem becomes one ``ConfigError`` line naming
the file, the workflow and the key.

Relative paths (``script``, ``db``, ``cwd``) resolve against the TOML file's
directory, so the file means the same thing whichever directory the
supervisor was started from.
"""

from __future__ import annotations

import importlib.resources
import json
import re
import sys
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_core import ErrorDetails

from supervisor.settings import SupervisorSettings
from workflows.contract import NAME_PATTERN

_NAME_RE = re.compile(NAME_PATTERN)
_MAX_SHOWN_INPUT = 40
_FRIENDLY = {
    "string_pattern_mismatch": "must be 1-48 letters, digits, '_', '.' or '-', "
    "starting with a letter or digit",
}

NonEmptyStr = Annotated[str, Field(min_length=1)]


class ConfigError(Exception):
    """A configuration problem, as one line fit for a log or a chat message."""


class WorkflowConfig(BaseModel):
    """One ``[[workflows]]`` table, exactly as written (paths not yet resolved)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=NAME_PATTERN)
    command: Annotated[list[NonEmptyStr], Field(min_length=1)] | None = None
    script: Path | None = None
    db: Path | None = None
    cwd: Path | None = None
    env: dict[str, str] = {}
    input: dict[str, Any] | None = None
    autostart: bool = True
    restart: Literal["on-failure", "always", "never"] = "on-failure"
    hang_threshold_seconds: float = Field(default=300, gt=0)
    restart_backoff_seconds: Annotated[list[Annotated[float, Field(ge=0)]], Field(min_length=1)] = [
        5,
        30,
        120,
        600,
    ]
    max_restart_attempts: int = Field(default=20, ge=0)
    watch: bool | None = None  # None: on for `script`, off for `command`
    # "auto": a give-up is followed by its diagnosis (/why) without anyone asking; it may call
    # Claude, so it is opt-in per workflow.
    diagnose: Literal["auto", "off"] = "off"
    # The forum topic (message thread id) of the alert chat whose messages are about this
    # workflow: plain text there goes to its agent session without naming it.
    topic: int | None = Field(default=None, gt=0)
    # Heal (supervisor/heal): /fix works whatever the mode; "propose" also offers a fix by
    # itself after the same failure twice; "auto" applies one that passed every gate untapped.
    heal: Literal["off", "propose", "auto"] = "off"
    heal_paths: list[NonEmptyStr] | None = None  # globs relative to cwd; default: its script
    heal_max_files: int = Field(default=3, ge=1)
    heal_max_lines: int = Field(default=80, ge=1)
    heal_check_command: Annotated[list[NonEmptyStr], Field(min_length=1)] | None = None
    heal_smoke_seconds: float = Field(default=60.0, gt=0)
    heal_probation_seconds: float = Field(default=600.0, gt=0)
    # USD its agents may spend per local day (ALERT_TIMEZONE): a note at 80%, a pause at 100%.
    budget_usd_per_day: float | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _one_way_to_run(self) -> WorkflowConfig:
        if self.command is None and self.script is None:
            raise ValueError("needs one of 'command' or 'script', got neither")
        if self.command is not None and self.script is not None:
            raise ValueError("needs one of 'command' or 'script', got both")
        return self


@dataclass(frozen=True)
class ResolvedWorkflow:
    """A workflow ready to spawn: every path absolute, the argv complete."""

    config: WorkflowConfig
    name: str
    argv: tuple[str, ...]
    cwd: Path
    db: Path
    env: dict[str, str]
    watch_paths: tuple[Path, ...]
    restart: Literal["on-failure", "always", "never"]
    hang_threshold_seconds: float
    restart_backoff_seconds: tuple[float, ...]
    max_restart_attempts: int
    autostart: bool
    script: Path | None
    diagnose: Literal["auto", "off"] = "off"

    @property
    def own_files(self) -> tuple[Path, ...]:
        """Its own code (heal's default ``heal_paths``): the script, or its command's files."""
        return own_files(self.config, self.script, self.cwd)

    @property
    def secrets(self) -> tuple[str, ...]:
        """The values of its TOML ``env``: kept from every request to a model.

        Not ``WORKFLOW_NAME`` and ``WORKFLOW_DB``, which we add: blanking a
        workflow's own name would hide nothing and garble every answer.
        """
        return tuple(self.config.env.values())


def load_workflows(settings: SupervisorSettings) -> list[ResolvedWorkflow]:
    """The configured workflows; the bundled demo when no file is configured.

    A missing file at the default path means a first run (show the demo);
    a missing file the user named explicitly is a mistake worth stopping for.
    """
    path = settings.config
    default = SupervisorSettings.model_fields["config"].default
    if path != default and not path.exists():
        raise ConfigError(f"{path}: file not found")
    return load_config(path, settings)


def load_config(path: Path, settings: SupervisorSettings) -> list[ResolvedWorkflow]:
    """Parse, validate and resolve the workflows TOML at ``path``.

    A missing file yields only the bundled demo workflow.
    """
    base = path.expanduser().resolve().parent
    if not path.exists():
        return [_resolve(_demo_config(), base, settings, require_script=False)]
    tables = _read_tables(path)
    workflows: list[ResolvedWorkflow] = []
    first_index: dict[str, int] = {}
    topics: dict[int, str] = {}
    for index, raw in enumerate(tables, start=1):
        config = _validate(path, index, raw)
        if config.name in first_index:
            raise ConfigError(
                f"{path}: workflow #{index} key 'name': duplicate name {config.name!r}"
                f" (also workflow #{first_index[config.name]})"
            )
        first_index[config.name] = index
        if config.topic is not None and config.topic in topics:
            raise ConfigError(
                f"{path}: workflow {config.name!r} key 'topic': topic {config.topic} is "
                f"already {topics[config.topic]!r}'s"
            )
        if config.topic is not None:
            topics[config.topic] = config.name
        try:
            workflows.append(_resolve(config, base, settings, require_script=True))
        except _KeyProblem as problem:
            raise ConfigError(
                f"{path}: workflow {config.name!r} key {problem.key!r}: {problem}"
            ) from None
    return workflows


def _demo_config() -> WorkflowConfig:
    demo = importlib.resources.files("workflows") / "examples" / "demo.py"
    return WorkflowConfig(name="demo", script=Path(str(demo)))


def _read_tables(path: Path) -> list[Mapping[str, Any]]:
    """The ``[[workflows]]`` tables of the file, after file-level checks."""
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: {_toml_problem(str(exc))}") from None
    unknown = sorted(set(document) - {"workflows"})
    if unknown:
        raise ConfigError(f"{path}: key {unknown[0]!r}: unknown top-level key (only 'workflows')")
    tables = document.get("workflows", [])
    if not isinstance(tables, list):
        raise ConfigError(f"{path}: key 'workflows': must be [[workflows]] tables")
    for index, table in enumerate(tables, start=1):
        if not isinstance(table, dict):
            raise ConfigError(f"{path}: workflow #{index}: must be a [[workflows]] table")
    return tables


def _toml_problem(message: str) -> str:
    """``line N: message`` from tomllib's ``message (at line N, column M)``."""
    match = re.search(r"\s*\(at line (\d+), column \d+\)$", message)
    if match is None:
        return " ".join(message.split())
    return f"line {match.group(1)}: {message[: match.start()]}"


def _validate(path: Path, index: int, raw: Mapping[str, Any]) -> WorkflowConfig:
    try:
        return WorkflowConfig.model_validate(raw)
    except ValidationError as exc:
        name = raw.get("name")
        who = repr(name) if isinstance(name, str) and _NAME_RE.match(name) else f"#{index}"
        raise ConfigError(f"{path}: workflow {who}{_describe(exc.errors()[0])}") from None


def _describe(error: ErrorDetails) -> str:
    """`` key 'k': problem`` (or ``: problem`` for whole-table errors), one line."""
    loc = error["loc"]
    if error["type"] == "missing":
        problem = "missing"
    elif error["type"] == "extra_forbidden":
        problem = "unknown key"
    else:
        msg = _FRIENDLY.get(error["type"], error["msg"].removeprefix("Value error, "))
        problem = msg if not loc else f"{msg} (got {_shown(error['input'])})"
    problem = " ".join(problem.split())
    if not loc:
        return f": {problem}"
    key = str(loc[0]) + "".join(
        f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc[1:]
    )
    return f" key {key!r}: {problem}"


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= _MAX_SHOWN_INPUT else text[: _MAX_SHOWN_INPUT - 3] + "..."


class _KeyProblem(ValueError):
    """A value that validated but does not fit the filesystem."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(problem)
        self.key = key


def _resolve(
    config: WorkflowConfig, base: Path, settings: SupervisorSettings, *, require_script: bool
) -> ResolvedWorkflow:
    cwd = _absolute(config.cwd, base) if config.cwd is not None else base
    if not cwd.is_dir():
        raise _KeyProblem("cwd", f"not a directory: {cwd}")
    db = (
        settings.state_dir / f"{config.name}.db"
        if config.db is None
        else _absolute(config.db, base)
    )
    script = _absolute(config.script, base) if config.script is not None else None
    if script is not None and require_script and not script.is_file():
        raise _KeyProblem("script", f"file not found: {script}")
    return ResolvedWorkflow(
        config=config,
        name=config.name,
        argv=_argv(config, script, db),
        cwd=cwd,
        db=db,
        env={**config.env, "WORKFLOW_DB": str(db), "WORKFLOW_NAME": config.name},
        watch_paths=_watch_paths(config, script, cwd),
        restart=config.restart,
        hang_threshold_seconds=config.hang_threshold_seconds,
        restart_backoff_seconds=tuple(config.restart_backoff_seconds),
        max_restart_attempts=config.max_restart_attempts,
        autostart=config.autostart,
        script=script,
        diagnose=config.diagnose,
    )


def _absolute(value: Path, base: Path) -> Path:
    return (base / value.expanduser()).resolve()


def _argv(config: WorkflowConfig, script: Path | None, db: Path) -> tuple[str, ...]:
    if script is not None:
        head: tuple[str, ...] = (sys.executable, "-m", "workflows", "run", str(script))
        head += ("--db", str(db))
    else:
        assert config.command is not None  # guaranteed by WorkflowConfig._one_way_to_run
        head = tuple(config.command)
    if config.input is None:
        return head
    return (*head, "--input", json.dumps(config.input))


def _watch_paths(config: WorkflowConfig, script: Path | None, cwd: Path) -> tuple[Path, ...]:
    """The files whose change should restart the workflow: its own files, when watched.

    Watching is on by default for ``script``, off for ``command``.
    """
    watched = config.watch is not False if script is not None else bool(config.watch)
    return own_files(config, script, cwd) if watched else ()


def own_files(config: WorkflowConfig, script: Path | None, cwd: Path) -> tuple[Path, ...]:
    """The workflow's own code: its ``script``, or the argv elements of its ``command`` that
    name files inside ``cwd`` (``./run.sh``, or ``job.py`` in ``python job.py``)."""
    if script is not None:
        return (script,)
    found: list[Path] = []
    for arg in config.command or ():
        candidate = (cwd / arg).resolve()
        if candidate.is_file() and candidate.is_relative_to(cwd) and candidate not in found:
            found.append(candidate)
    return tuple(found)
