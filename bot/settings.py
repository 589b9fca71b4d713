"""The bot's settings, from the environment and `.env` (names fixed by DESIGN.md)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import time
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from bot.localtime import clock_time
from supervisor.days import zone
from supervisor.observe.settings import MetricsSettings

DEFAULT_API_BASE_URL = "https://api.telegram.org/bot"
IdList = Annotated[list[int], NoDecode]


@dataclass(frozen=True, slots=True)
class Alerting:
    """When and in which zone alerts speak of time: the ``ALERT_*`` settings, parsed."""

    timezone: ZoneInfo
    digest_at: time  # in ``timezone``
    renotify_seconds: float  # 0: a give-up is never repeated


def default_alerting() -> Alerting:
    """The ``ALERT_*`` defaults, without reading the environment (for tests and the console)."""
    return BotSettings.model_construct().alerting


class BotSettings(MetricsSettings):
    """``TELEGRAM_*``, ``HEALTHCHECK_*``, ``ALERT_*`` and ``METRICS_ADDR`` settings.

    The token is a secret so it never shows in a repr or log; so is the ping
    URL (it carries the check's UUID), which is why it too is a ``SecretStr``.
    """

    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    telegram_bot_token: SecretStr | None = None
    telegram_chat_id: int | None = None
    telegram_allowed_chat_ids: IdList = Field(default_factory=list)
    telegram_allowed_user_ids: IdList = Field(default_factory=list)
    telegram_api_base_url: str = DEFAULT_API_BASE_URL
    telegram_message_thread_id: int | None = None
    # Pace of alerts; Telegram allows about 1 message/s in a chat and 20/min in a group.
    telegram_pace_seconds: float = Field(default=1.0, ge=0)
    telegram_group_pace_seconds: float = Field(default=3.0, ge=0)
    # How long getUpdates waits for news; shorter only makes sense in tests.
    telegram_poll_timeout_seconds: int = Field(default=30, ge=0)
    # Dead-man's switch (Healthchecks.io style): pinged from the event loop while it runs.
    healthcheck_ping_url: SecretStr | None = None
    healthcheck_ping_seconds: float = Field(default=60.0, gt=0)
    # Every time in the chat is shown in this IANA zone, labelled; the digest comes at
    # ALERT_DIGEST_AT there; an unacknowledged give-up is repeated every ALERT_RENOTIFY_HOURS.
    alert_timezone: str = "UTC"
    alert_digest_at: str = "09:00"
    alert_renotify_hours: float = Field(default=4.0, ge=0)

    @field_validator("telegram_allowed_chat_ids", "telegram_allowed_user_ids", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [int(part) for part in value.replace(";", ",").split(",") if part.strip()]
        if isinstance(value, int):
            return [value]
        return value

    @field_validator("telegram_api_base_url")
    @classmethod
    def _no_trailing_slash(cls, value: str) -> str:
        return value.rstrip("/")

    @field_validator("alert_timezone")
    @classmethod
    def _iana_zone(cls, value: str) -> str:
        zone(value)
        return value

    @field_validator("alert_digest_at")
    @classmethod
    def _hh_mm(cls, value: str) -> str:
        return clock_time(value).strftime("%H:%M")

    @property
    def alerting(self) -> Alerting:
        return Alerting(
            zone(self.alert_timezone),
            clock_time(self.alert_digest_at),
            self.alert_renotify_hours * 3600,
        )

    @property
    def token(self) -> str | None:
        return self.telegram_bot_token.get_secret_value() if self.telegram_bot_token else None

    @field_validator("healthcheck_ping_url")
    @classmethod
    def _http_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value():
            return None
        url = value.get_secret_value().rstrip("/")
        if not url.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return SecretStr(url)

    @property
    def ping_url(self) -> str | None:
        url = self.healthcheck_ping_url
        return url.get_secret_value() if url else None

    @property
    def allowed_chats(self) -> frozenset[int]:
        chats = set(self.telegram_allowed_chat_ids)
        if self.telegram_chat_id is not None:
            chats.add(self.telegram_chat_id)
        return frozenset(chats)
