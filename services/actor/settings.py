"""Deployment settings of the actor service, read from the environment (no prefix).

The algorithm's hyper-parameters are not here: the actor reads them from the learner's
``GET /config``.
"""

from __future__ import annotations

import socket
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.http import DEFAULT_KEEP_ALIVE_S, LogLevel


class ActorSettings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore")

    learner_url: str = Field(default="http://127.0.0.1:8001", description="The learner's address.")
    replay_url: str = Field(default="http://127.0.0.1:8000", description="The replay's address.")
    actor_id: str = Field(
        default_factory=socket.gethostname, description="Name in reports (default: host name)."
    )
    seed: int | None = Field(
        default=None,
        description="Seed of the envs and the policy (default: the experiment's seed mixed with"
        " ACTOR_ID and ACTOR_INDEX).",
    )
    num_envs: int | None = Field(
        default=None, ge=1, description="Vectorized envs (default: the agent config's)."
    )
    role: Literal["actor", "evaluator"] = Field(
        default="actor", description="evaluator: greedy (evaluation epsilon), no inserts."
    )
    actor_index: int = Field(default=0, ge=0, description="This actor's index, for epsilons.")
    num_actors: int = Field(default=1, ge=1, description="Number of actors, for epsilons.")
    host: str = "0.0.0.0"
    port: int = Field(default=8002, ge=1, le=65535)
    rlfleet_token: SecretStr | None = Field(
        default=None, description="When set, /status needs 'Authorization: Bearer <token>'."
    )
    log_level: LogLevel = "info"
    keep_alive_s: float = Field(
        default=DEFAULT_KEEP_ALIVE_S, gt=0, description="Idle keep-alive connections close."
    )
    report_every_s: float = Field(default=1.0, gt=0, description="Seconds between reports.")
    insert_timeout_s: float = Field(
        default=5.0, gt=0, description="Long-poll of one insert before it is retried (429)."
    )
    max_pending_requests: int = Field(
        default=8, ge=1, description="Insert requests queued before acting waits (back-pressure)."
    )
    concurrent_inserts: int = Field(default=2, ge=1, description="Insert requests in flight.")
    shutdown_flush_s: float = Field(
        default=10.0, ge=0, description="Time given to pending inserts on shutdown."
    )

    @property
    def token(self) -> str | None:
        return self.rlfleet_token.get_secret_value() if self.rlfleet_token else None

    @model_validator(mode="after")
    def _index_in_range(self) -> ActorSettings:
        if self.actor_index >= self.num_actors:
            raise ValueError(
                f"ACTOR_INDEX ({self.actor_index}) must be below NUM_ACTORS ({self.num_actors})"
            )
        return self
