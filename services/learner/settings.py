"""Deployment settings of the learner, read from the environment (no prefix; see docs/learner.md).

The algorithm's hyper-parameters are the agent's config dataclass; ``AGENT_CONFIG`` holds JSON
overrides of it, merged over the defaults and checked here so that a typo stops the learner at
start with the reason instead of training with the wrong value.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Literal

import gymnasium
from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

# Several batches per sample request cut the learner's CPU per update (HTTP and decoding are paid
# once per request) and make the replay the only bound; see docs/learner.md for the figures.
DEFAULT_BATCHES_PER_SAMPLE = 4


class LearnerSettings(BaseSettings):
    """``python -m services.learner`` settings; each field is one environment variable."""

    model_config = SettingsConfigDict(case_sensitive=False, extra="ignore")

    host: str = Field(default="0.0.0.0", description="Interface to listen on.")
    port: int = Field(default=8001, ge=1, le=65535, description="Port to listen on.")
    rlfleet_token: SecretStr | None = Field(
        default=None, description="When set, every endpoint but /healthz and /metrics needs it."
    )
    log_level: Literal["critical", "error", "warning", "info", "debug"] = "info"

    replay_url: str = Field(default="http://127.0.0.1:8000", description="The replay service.")
    agent: Literal["dqn"] = Field(default="dqn", description="Which agent to train.")
    env_id: str = Field(default="CartPole-v1", description="A registered gymnasium id.")
    seed: int = Field(default=0, ge=0, description="Seeds the parameters and the learner's rng.")
    agent_config: Annotated[dict[str, Any], NoDecode] = Field(
        default_factory=dict, description="JSON object of overrides of the agent's config."
    )
    checkpoint_dir: Path | None = Field(
        default=None, description="Where checkpoints go; unset = no checkpoints, no resume."
    )
    checkpoint_every_s: float = Field(default=30.0, gt=0, description="Seconds between saves.")
    checkpoint_keep: int = Field(default=3, ge=1, description="How many checkpoints to keep.")
    run_dir: Path | None = Field(
        default=None, description="Metrics (JSONL) and TensorBoard events go here; unset = none."
    )
    sample_prefetch: int = Field(
        default=3, ge=1, le=16, description="Batches requested ahead of the update that uses them."
    )
    batches_per_sample: int | None = Field(
        default=None,
        ge=1,
        le=64,
        description="Batches per sample request, run as one scanned update (fewer round trips);"
        f" unset = up to {DEFAULT_BATCHES_PER_SAMPLE}, as the rate limiter's window allows.",
    )
    sample_process: bool = Field(
        default=True,
        description="Sample replay from a child process that hands batches over in shared memory,"
        " so the HTTP client's work never holds the update thread's GIL (flat signatures only).",
    )
    max_body_bytes: int = Field(default=4 << 20, ge=1024, description="Limit of POST bodies.")

    @field_validator("agent_config", mode="before")
    @classmethod
    def _parse_agent_config(cls, value: Any) -> Any:
        if isinstance(value, str):
            try:
                value = json.loads(value) if value.strip() else {}
            except json.JSONDecodeError as e:
                raise ValueError(f"AGENT_CONFIG is not valid JSON: {e}") from e
        if not isinstance(value, dict):
            raise ValueError("AGENT_CONFIG must be a JSON object of config overrides")
        return value

    @field_validator("env_id")
    @classmethod
    def _registered_env(cls, value: str) -> str:
        try:
            gymnasium.spec(value)
        except gymnasium.error.Error as e:
            raise ValueError(
                f"ENV_ID {value!r} is not a registered gymnasium environment: {e}"
            ) from e
        return value

    @field_validator("agent_config", mode="after")
    @classmethod
    def _agent_config_applies(cls, value: dict[str, Any]) -> dict[str, Any]:
        _merge_dqn_config(value)  # raises with the reason when an override is wrong
        return value

    @model_validator(mode="after")
    def _sample_requests_fit_the_rate_limiter(self) -> LearnerSettings:
        if self.batches_per_sample is None:
            return self
        config = self.make_agent_config()
        window = _sample_window(config)
        sampled = config.batch_size * self.batches_per_sample
        if sampled > window:
            raise ValueError(
                f"BATCHES_PER_SAMPLE: batch_size * {self.batches_per_sample} = {sampled} items per"
                " sample request do not fit the rate limiter's window (2 * error_buffer -"
                f" insert_batch_size * samples_per_insert = {window}): sampling could block for"
                " ever (deadlock); raise error_buffer or lower BATCHES_PER_SAMPLE"
            )
        return self

    def sample_batches(self) -> int:
        """Batches per sample request: BATCHES_PER_SAMPLE, or the default that fits."""
        if self.batches_per_sample is not None:
            return self.batches_per_sample
        config = self.make_agent_config()
        fits = int(_sample_window(config) // config.batch_size)
        return max(1, min(DEFAULT_BATCHES_PER_SAMPLE, fits))

    def make_agent_config(self) -> Any:
        """The agent's config dataclass: defaults merged with ``AGENT_CONFIG``."""
        return _merge_dqn_config(self.agent_config)

    @property
    def token(self) -> str | None:
        return self.rlfleet_token.get_secret_value() if self.rlfleet_token else None


def _merge_dqn_config(overrides: dict[str, Any]) -> Any:
    from shared.agents.dqn.config import DQNConfig

    try:
        return DQNConfig.from_dict({**DQNConfig().to_dict(), **overrides})
    except (TypeError, ValueError) as e:
        raise ValueError(f"does not fit the dqn config: {e}") from e


def _sample_window(config: Any) -> float:
    """Items one sample request may ask for without risking a rate-limiter deadlock."""
    return 2 * config.error_buffer - config.insert_batch_size * config.samples_per_insert
