"""Deployment settings of the replay service, read from the environment (no prefix)."""

from __future__ import annotations

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore")

    host: str = Field(default="0.0.0.0", description="HOST: interface to listen on.")
    port: int = Field(default=8000, description="PORT: TCP port.")
    rlfleet_token: str | None = Field(
        default=None, description="RLFLEET_TOKEN: when set, requests need `Bearer <token>`."
    )
    log_level: str = Field(default="info", description="LOG_LEVEL: debug, info, warning, ...")
    redis_url: str | None = Field(
        default=None, description="REDIS_URL: store tables in Redis; unset = in memory."
    )
    max_body_bytes: int = Field(
        default=256 * 1024 * 1024, ge=1, description="MAX_BODY_BYTES: larger bodies get 413."
    )
    seed: int | None = Field(
        default=None, description="SEED: seeds the memory backend's sampling (reproducible runs)."
    )

    @field_validator("rlfleet_token", "redis_url", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: str | None) -> str | None:
        return value or None
