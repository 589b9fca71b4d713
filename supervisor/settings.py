"""The supervisor's own knobs, read from ``SUPERVISOR_*`` variables and ``.env``.

Kept apart from the workflow list (``supervisor.config``) because these are
per-host operational settings, while the TOML describes what to run and is
meant to be committed with the project.
"""

from __future__ import annotations

import socket
from pathlib import Path

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict


class SupervisorSettings(BaseSettings):
    """Where the supervisor keeps its files and how often it looks at things."""

    model_config = SettingsConfigDict(
        env_prefix="SUPERVISOR_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
    )

    config: Path = Path("supervisor.toml")
    data_dir: Path = Path(".supervisor")
    db_url: str | None = None
    check_interval_seconds: float = Field(default=5.0, gt=0)
    # The digest's period; 0: daily at ALERT_DIGEST_AT (the bot schedules it, bot/digest.py).
    status_interval_seconds: float = Field(default=0.0, ge=0)
    stop_grace_seconds: float = Field(default=10.0, ge=0)
    error_poll_seconds: float = Field(default=0.5, gt=0)
    healthy_reset_seconds: float = Field(default=600.0, ge=0)
    # A restarted workflow counts as recovered after heartbeating this long.
    recovery_seconds: float = Field(default=30.0, ge=0)
    reload_debounce_seconds: float = Field(default=1.0, ge=0)
    log_max_bytes: int = Field(default=10_000_000, gt=0)
    log_backups: int = Field(default=3, ge=0)
    # This host's name in a fleet (several nodes sharing a Postgres SUPERVISOR_DB_URL).
    node: str = Field(default_factory=socket.gethostname, min_length=1, max_length=64)

    @property
    def fleet(self) -> bool:
        """Several nodes share the control DB: only on a server database (Postgres)."""
        return not self.control_db_url.startswith("sqlite")

    @property
    def control_db_url(self) -> str:
        """The configured URL, or SQLite in the data dir by absolute path.

        Absolute so that a process started from another directory (a
        ``status`` command, a systemd unit) opens the same file.
        """
        return self.db_url or f"sqlite:///{self._data_path / 'control.db'}"

    @property
    def logs_dir(self) -> Path:
        """One rotating log file per workflow."""
        return self._data_path / "logs"

    @property
    def run_dir(self) -> Path:
        """Pid files of running workflow process groups."""
        return self._data_path / "run"

    @property
    def state_dir(self) -> Path:
        """Default home of each workflow's state database."""
        return self._data_path / "state"

    @property
    def _data_path(self) -> Path:
        return self.data_dir.expanduser().resolve()


def one_line(exc: ValidationError) -> str:
    """A settings error as one line naming the environment variable."""
    first = exc.errors()[0]
    prefix = SupervisorSettings.model_config.get("env_prefix", "")
    prefix = prefix if exc.title == SupervisorSettings.__name__ else ""
    where = prefix + "_".join(str(part) for part in first["loc"]).upper()
    return f"bad setting {where}: {first['msg']}"


class FleetSettings(BaseSettings):
    """``FLEET_*``: how fast a fleet on Postgres notices a dead poller or a silent node."""

    model_config = SettingsConfigDict(
        env_prefix="FLEET_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    # A dead poller is replaced within this (kill -9, lost network, lost DB connection).
    failover_seconds: float = Field(default=15.0, ge=1)
    # A node silent this long is down: a loud alert, its workflows unsupervised.
    node_timeout_seconds: float = Field(default=60.0, ge=2)
