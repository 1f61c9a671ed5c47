"""TD3's networks: a deterministic tanh policy and the twin critic."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from shared.agents.continuous import TwinCritic
from shared.agents.td3.config import TD3Config

Params = Any  # flax variables


class DeterministicPolicy(nn.Module):
    """(batch, obs_dim) -> (batch, A) actions in [-1, 1]."""

    hidden_sizes: Sequence[int]
    action_dim: int

    @nn.compact
    def __call__(self, observation: jax.Array) -> jax.Array:
        x = observation.astype(jnp.float32)
        for size in self.hidden_sizes:
            x = nn.relu(nn.Dense(size)(x))
        return jnp.tanh(nn.Dense(self.action_dim)(x))


class Networks(NamedTuple):
    policy: DeterministicPolicy
    critic: TwinCritic


def make_networks(config: TD3Config, action_dim: int) -> Networks:
    hidden = tuple(config.hidden_sizes)
    return Networks(DeterministicPolicy(hidden, action_dim), TwinCritic(hidden))
