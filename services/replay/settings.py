"""Deployment settings of the replay service, read from the environment (no prefix)."""

from __future__ import annotations

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.http import DEFAULT_BODY_TIMEOUT_S, DEFAULT_KEEP_ALIVE_S, LogLevel
from services.replay.parsing import MAX_TIMEOUT_MS
from services.replay.table import DEFAULT_MAX_WAITERS


class Settings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore")

    host: str = Field(default="0.0.0.0", description="HOST: interface to listen on.")
    port: int = Field(default=8000, ge=1, le=65535, description="PORT: TCP port.")
    rlfleet_token: SecretStr | None = Field(
        default=None, description="RLFLEET_TOKEN: when set, requests need `Bearer <token>`."
    )
    log_level: LogLevel = Field(default="info", description="LOG_LEVEL: debug, info, warning, ...")
    redis_url: str | None = Field(
        default=None, description="REDIS_URL: store tables in Redis; unset = in memory."
    )
    max_body_bytes: int = Field(
        default=256 * 1024 * 1024, ge=1, description="MAX_BODY_BYTES: larger bodies get 413."
    )
    max_waiters: int = Field(
        default=DEFAULT_MAX_WAITERS,
        ge=1,
        description="MAX_WAITERS: requests of each kind (insert, sample) that may wait for one"
        " table's rate limiter; the next is answered 429 at once.",
    )
    max_wait_ms: int = Field(
        default=MAX_TIMEOUT_MS,
        ge=0,
        le=MAX_TIMEOUT_MS,
        description="MAX_WAIT_MS: the longest a request waits for the rate limiter, whatever its"
        " timeout_ms.",
    )
    body_timeout_s: float = Field(
        default=DEFAULT_BODY_TIMEOUT_S,
        gt=0,
        description="BODY_TIMEOUT_S: a request body must arrive within this; otherwise 408.",
    )
    keep_alive_s: float = Field(
        default=DEFAULT_KEEP_ALIVE_S, gt=0, description="KEEP_ALIVE_S: idle connections close."
    )
    seed: int | None = Field(
        default=None, description="SEED: seeds the memory backend's sampling (reproducible runs)."
    )

    @field_validator("rlfleet_token", "redis_url", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: str | None) -> str | None:
        return value or None

    @property
    def token(self) -> str | None:
        return self.rlfleet_token.get_secret_value() if self.rlfleet_token else None
