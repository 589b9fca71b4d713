"""What every entry point checks before it starts anything, as one-line errors."""

from __future__ import annotations

from pydantic import ValidationError

from supervisor.config import ConfigError, ResolvedWorkflow, load_workflows
from supervisor.control import ControlDB, ControlDBError
from supervisor.settings import SupervisorSettings, one_line


class StartupError(Exception):
    """Settings, the workflows TOML or the control DB cannot be used; the text is one line."""


def load_supervision(
    *, check_control_db: bool
) -> tuple[SupervisorSettings, list[ResolvedWorkflow]]:
    """Settings and workflows, and (when it will be used) a control DB known to open."""
    try:
        settings = SupervisorSettings()
        workflows = load_workflows(settings)
        if check_control_db:
            ControlDB(settings.control_db_url).close()
    except ValidationError as exc:
        raise StartupError(one_line(exc)) from exc
    except (ConfigError, ControlDBError) as exc:
        raise StartupError(str(exc)) from exc
    return settings, workflows
