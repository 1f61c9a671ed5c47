"""The Q-network: an MLP from observations to one value per action."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from shared.agents.dqn.config import DQNConfig

Params = Any  # flax variables: {"params": {"Dense_0": {"kernel": ..., "bias": ...}, ...}}


class QNetwork(nn.Module):
    """ReLU MLP; ``__call__`` maps (batch, obs_dim) to (batch, num_actions)."""

    hidden_sizes: Sequence[int]
    num_actions: int

    @nn.compact
    def __call__(self, observation: jax.Array) -> jax.Array:
        x = observation.astype(jnp.float32)  # (batch, obs_dim)
        for size in self.hidden_sizes:
            x = nn.relu(nn.Dense(size)(x))  # (batch, size)
        return nn.Dense(self.num_actions)(x)  # (batch, num_actions)


def make_network(config: DQNConfig, num_actions: int) -> QNetwork:
    return QNetwork(hidden_sizes=tuple(config.hidden_sizes), num_actions=num_actions)


def init_params(network: QNetwork, rng: jax.Array, obs_dim: int) -> Params:
    """Fresh parameters for observations of shape (obs_dim,)."""
    return jax.jit(network.init)(rng, jnp.zeros((1, obs_dim), jnp.float32))
