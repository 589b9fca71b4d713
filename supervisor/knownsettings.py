"""Refuse settings nobody reads: a misspelt name must not silently fall back to a default.

pydantic-settings ignores variables it has no field for, so a typo in
``TELEGRAM_ALLOWED_USER_IDS`` would open the bot to every member of a group.
Every name under one of our prefixes, in the environment or in ``.env``, must
therefore belong to a settings model, be read directly from the environment,
or be reserved for a feature being built.

A program checks only the prefixes it reads (those of which it knows at least
one name), because the bot and the headless supervisor share one ``.env``:
``python -m supervisor run`` must not refuse the bot's ``TELEGRAM_*`` names,
which it cannot know without importing ``bot`` (the dependency runs the other
way). So a typo under a prefix only the other program reads is caught when
that program starts, not here.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Collection, Iterable
from pathlib import Path

from dotenv import dotenv_values
from pydantic_settings import BaseSettings

from supervisor.agentsettings import AgentSettings
from supervisor.faults import FAULT_VARIABLE
from supervisor.settings import FleetSettings, SupervisorSettings
from workflows.contract import HEARTBEAT_FILE_ENV

ENV_FILE = Path(".env")
PREFIXES = (
    "TELEGRAM_",
    "SUPERVISOR_",
    "WORKFLOW_",
    "ALERT_",
    "HEALTHCHECK_",
    "AGENT_",
    "FLEET_",
    "METRICS_",
)
# Read with os.environ by workflows/workflow.py, workflows/state.py, supervisor/config.py and
# supervisor/faults.py (a supervisor run as a workflow is given the first four).
READ_DIRECTLY = frozenset(
    {
        "WORKFLOW_DB",
        "WORKFLOW_NAME",
        "WORKFLOW_HEARTBEAT_SECONDS",
        HEARTBEAT_FILE_ENV,
        FAULT_VARIABLE,
    }
)
# Reserved for features being built (DESIGN.md, "Names added this turn"), so that a
# configuration written for them is not refused; drop a name once a model has it.
RESERVED: frozenset[str] = frozenset()


class UnknownSetting(Exception):
    """A prefixed name no setting has; the text is one line with the closest known name."""


def model_names(model: type[BaseSettings]) -> set[str]:
    """The variable names a settings model reads: its prefix plus each field name.

    (None of our models uses an alias; one that did would need it added here.)
    """
    prefix = str(model.model_config.get("env_prefix", ""))
    return {(prefix + field).upper() for field in model.model_fields}


def known_names(models: Iterable[type[BaseSettings]]) -> frozenset[str]:
    """Every name a program with these models knows (the supervisor's and Claude's always)."""
    every: list[type[BaseSettings]] = [
        SupervisorSettings,
        FleetSettings,
        AgentSettings,
        *models,
    ]
    return READ_DIRECTLY | RESERVED | {name for model in every for name in model_names(model)}


def unknown_setting(names: Iterable[str], known: Collection[str]) -> str | None:
    """The one-line complaint about ``names`` that ``known`` lacks, or None if all are known."""
    checked = tuple(p for p in PREFIXES if any(name.startswith(p) for name in known))
    unknown = sorted(
        {name for name in names if name.upper().startswith(checked) and name.upper() not in known}
    )
    if not unknown:
        return None
    first, *others = unknown
    close = difflib.get_close_matches(first.upper(), known, n=1)
    hint = f"did you mean {close[0]}?" if close else "no setting has a name like it"
    also = f"; also unknown: {', '.join(others)}" if others else ""
    return f"unknown setting {first} ({hint}){also}"


def check_settings_names(models: Iterable[type[BaseSettings]] = ()) -> None:
    """Raise ``UnknownSetting`` for a name in the environment or ``./.env`` nobody reads.

    ``./.env`` because that is the file pydantic-settings reads (``env_file``).
    """
    names = set(os.environ)
    if ENV_FILE.is_file():
        names |= set(dotenv_values(ENV_FILE))
    problem = unknown_setting(names, known_names(models))
    if problem:
        raise UnknownSetting(problem)
