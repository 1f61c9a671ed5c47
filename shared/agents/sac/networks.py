"""SAC's networks: a Gaussian policy head (squashed by tanh in losses.py) and the twin critic."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from shared.agents.continuous import TwinCritic
from shared.agents.sac.config import SACConfig

Params = Any  # flax variables


class GaussianPolicy(nn.Module):
    """(batch, obs_dim) -> mean, log_std, each (batch, A), of the Gaussian before the tanh."""

    hidden_sizes: Sequence[int]
    action_dim: int
    log_std_min: float
    log_std_max: float

    @nn.compact
    def __call__(self, observation: jax.Array) -> tuple[jax.Array, jax.Array]:
        x = observation.astype(jnp.float32)
        for size in self.hidden_sizes:
            x = nn.relu(nn.Dense(size)(x))
        mean = nn.Dense(self.action_dim)(x)
        raw = nn.Dense(self.action_dim)(x)
        # a smooth squash into the bounds instead of a clip, which would stop the gradient
        log_std = self.log_std_min + 0.5 * (self.log_std_max - self.log_std_min) * (
            jnp.tanh(raw) + 1.0
        )
        return mean, log_std


class Networks(NamedTuple):
    policy: GaussianPolicy
    critic: TwinCritic


def make_networks(config: SACConfig, action_dim: int) -> Networks:
    hidden = tuple(config.hidden_sizes)
    policy = GaussianPolicy(hidden, action_dim, config.log_std_min, config.log_std_max)
    return Networks(policy, TwinCritic(hidden))
