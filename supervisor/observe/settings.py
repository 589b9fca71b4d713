"""``METRICS_ADDR``, read by the bot and by a headless node alike."""

from __future__ import annotations

from pydantic import field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from supervisor.observe.server import parse_addr


class MetricsSettings(BaseSettings):
    """Where ``/metrics``, ``/healthz`` and ``/readyz`` listen (``supervisor.observe``)."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    # HOST:PORT; unset: off. Port 0: any free one (the log line says which).
    metrics_addr: str | None = None

    @field_validator("metrics_addr")
    @classmethod
    def _host_port(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        parse_addr(value)
        return value.strip()
