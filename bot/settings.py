"""The bot's settings, from the environment and `.env` (names fixed by DESIGN.md)."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEFAULT_API_BASE_URL = "https://api.telegram.org/bot"
IdList = Annotated[list[int], NoDecode]


class BotSettings(BaseSettings):
    """``TELEGRAM_*`` and ``HEALTHCHECK_*`` settings.

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
