"""Deployment settings of the learner, read from the environment (no prefix; see docs/learner.md).

``AGENT`` names the agent (a short name of ``shared/agents/`` or any importable module path) and
``AGENT_CONFIG`` holds JSON overrides of its ``Config``; the experiment they make is built and
checked here (services/experiment.py), so that a typo, an agent that does not fulfil the contract
or a deadlocking rate limiter stops the learner at start with the reason instead of training
with the wrong value.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, PrivateAttr, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from services.experiment import Experiment, build_experiment
from services.http import DEFAULT_BODY_TIMEOUT_S, DEFAULT_KEEP_ALIVE_S, LogLevel


class LearnerSettings(BaseSettings):
    """``python -m services.learner`` settings; each field is one environment variable."""

    model_config = SettingsConfigDict(case_sensitive=False, extra="ignore")

    host: str = Field(default="0.0.0.0", description="Interface to listen on.")
    port: int = Field(default=8001, ge=1, le=65535, description="Port to listen on.")
    rlfleet_token: SecretStr | None = Field(
        default=None, description="When set, every endpoint but /healthz and /metrics needs it."
    )
    log_level: LogLevel = "info"

    replay_url: str = Field(default="http://127.0.0.1:8000", description="The replay service.")
    agent: str = Field(
        default="dqn",
        min_length=1,
        description="The agent: a short name of shared/agents/ (dqn) or an importable module path.",
    )
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
        " unset = the agent's own (its fleet knob).",
    )
    sample_process: bool = Field(
        default=True,
        description="Sample replay from a child process that hands batches over in shared memory,"
        " so the HTTP client's work never holds the update thread's GIL (flat signatures only).",
    )
    max_body_bytes: int = Field(default=4 << 20, ge=1024, description="Limit of POST bodies.")
    body_timeout_s: float = Field(
        default=DEFAULT_BODY_TIMEOUT_S, gt=0, description="A body must arrive within this (408)."
    )
    keep_alive_s: float = Field(
        default=DEFAULT_KEEP_ALIVE_S, gt=0, description="Idle keep-alive connections close."
    )

    _experiment: Experiment | None = PrivateAttr(default=None)

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

    @model_validator(mode="after")
    def _experiment_builds(self) -> LearnerSettings:
        self._experiment = build_experiment(
            self.agent,
            self.env_id,
            seed=self.seed,
            overrides=self.agent_config,
            batches_per_sample=self.batches_per_sample,
        )  # ExperimentError (a ValueError): exit 2 with its one line
        return self

    @property
    def experiment(self) -> Experiment:
        """The agent, its config, the env's spec and the fleet knobs, checked together."""
        assert self._experiment is not None
        return self._experiment

    @property
    def token(self) -> str | None:
        return self.rlfleet_token.get_secret_value() if self.rlfleet_token else None
