"""The control plane's Claude knobs: which model, how long, how much per day, at what price.

Kept apart from ``SupervisorSettings`` because the names are not under one
prefix (``ANTHROPIC_MODEL`` is shared with the workflows' own agents, the
``AGENT_*`` names with the bridge and heal to come), and because only the
pieces that call Claude need them. ``ANTHROPIC_API_KEY`` and
``ANTHROPIC_BASE_URL`` are read here too, so that a key kept in ``.env``
works like one in the environment; Claude counts as configured when the key
is set.
"""

from __future__ import annotations

from typing import Literal
from zoneinfo import ZoneInfo

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from supervisor.days import zone
from workflows.agents import DEFAULT_MODEL
from workflows.prices import Price


class AgentSettings(BaseSettings):
    """``ANTHROPIC_*`` and ``AGENT_*`` settings of the control plane's calls to Claude."""

    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    anthropic_api_key: SecretStr | None = None
    anthropic_base_url: str | None = None
    anthropic_model: str = DEFAULT_MODEL
    agent_timeout_seconds: float = Field(default=90.0, gt=0)
    agent_max_usd_per_day: float = Field(default=5.0, ge=0)
    # Model id (or id prefix) -> price; merged over workflows.prices.BUILT_IN_PRICES.
    agent_prices: dict[str, Price] = Field(default_factory=dict)
    # The bridge: which agent answers in the chat, how long a proposed change waits for a tap,
    # and what it may do untapped ("read": reading tools only; "none": every tool asks).
    agent_backend: Literal["builtin", "claude-code", "scripted"] = "builtin"
    agent_approval_seconds: float = Field(default=120.0, gt=0)
    agent_auto_approve: Literal["read", "none"] = "read"
    # Days of spend (this cap, the workflows' budget_usd_per_day, /cost's "today") begin at
    # midnight here: the zone the chat shows times in.
    alert_timezone: str = "UTC"

    @field_validator("alert_timezone")
    @classmethod
    def _iana_zone(cls, value: str) -> str:
        zone(value)
        return value

    @property
    def zone(self) -> ZoneInfo:
        return zone(self.alert_timezone)

    @property
    def configured(self) -> bool:
        """Whether Claude may be asked at all (a key is set)."""
        return bool(self.anthropic_api_key and self.anthropic_api_key.get_secret_value())
