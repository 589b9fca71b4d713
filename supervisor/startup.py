"""What every entry point checks before it starts anything, as one-line errors."""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import ValidationError
from pydantic_settings import BaseSettings

from supervisor.config import ConfigError, ResolvedWorkflow, load_workflows
from supervisor.control import ControlDB, ControlDBError
from supervisor.knownsettings import UnknownSetting, check_settings_names
from supervisor.settings import SupervisorSettings, one_line


class StartupError(Exception):
    """Settings, the workflows TOML or the control DB cannot be used; the text is one line."""


def load_supervision(
    *, check_control_db: bool, models: Sequence[type[BaseSettings]] = ()
) -> tuple[SupervisorSettings, list[ResolvedWorkflow]]:
    """Settings and workflows, and (when it will be used) a control DB known to open.

    ``models`` are the caller's settings models besides ``SupervisorSettings``:
    their names are known too, so only misspelt ones are refused.
    """
    try:
        check_settings_names(models)
        settings = SupervisorSettings()
        workflows = load_workflows(settings)
        if check_control_db:
            ControlDB(settings.control_db_url).close()
    except ValidationError as exc:
        raise StartupError(one_line(exc)) from exc
    except (UnknownSetting, ConfigError, ControlDBError) as exc:
        raise StartupError(str(exc)) from exc
    return settings, workflows
