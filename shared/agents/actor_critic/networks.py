"""The actor-critic network: separate policy and value MLPs, and the policy's distribution.

As in cleanRL's ``ppo.py`` and ``ppo_continuous_action.py``: tanh hidden layers with orthogonal
initialization (gain sqrt 2), a policy head initialized at gain 0.01 (a near-uniform first policy)
and a value head at gain 1. For ``Discrete`` actions the head gives logits and the policy is a
``distrax.Categorical``; for ``Box`` actions it gives the mean of a ``distrax.MultivariateNormalDiag``
whose log standard deviation is one learned vector, independent of the state.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import distrax
import flax.linen as nn
import gymnasium
import jax
import jax.numpy as jnp
import numpy as np

from shared.interfaces import EnvSpec, UnsupportedEnvironment

Params = Any  # flax variables {"params": {"policy": ..., "value": ..., ["log_std"]}}


def _dense(size: int, gain: float, name: str) -> nn.Dense:
    return nn.Dense(size, kernel_init=nn.initializers.orthogonal(gain), name=name)


class ActorCritic(nn.Module):
    """``__call__`` maps (..., *obs_shape) to (head (..., num_actions or action_dim), value (...))."""

    hidden_sizes: Sequence[int]
    head_size: int
    gaussian: bool

    @nn.compact
    def __call__(self, observation: jax.Array) -> tuple[jax.Array, jax.Array]:
        x = observation.astype(jnp.float32)

        def mlp(name: str, out: int, gain: float) -> jax.Array:
            h = x
            for i, size in enumerate(self.hidden_sizes):
                h = jnp.tanh(_dense(size, np.sqrt(2), f"{name}_{i}")(h))
            return _dense(out, gain, f"{name}_out")(h)

        head = mlp("policy", self.head_size, 0.01)  # (..., head_size)
        value = mlp("value", 1, 1.0)[..., 0]  # (...,)
        if self.gaussian:
            log_std = self.param("log_std", nn.initializers.zeros, (self.head_size,))
            head = jnp.concatenate([head, jnp.broadcast_to(log_std, head.shape)], -1)
        return head, value


class Network(NamedTuple):
    """The module and how to read its head as a distribution, for one environment's spaces."""

    module: ActorCritic
    distribution: Any  # head -> distrax.Distribution over actions
    obs_shape: tuple[int, ...]
    gaussian: bool
    low: np.ndarray | None  # Box bounds the env's actions are clipped to
    high: np.ndarray | None

    def init(self, key: jax.Array) -> Params:
        return self.module.init(key, jnp.zeros((1, *self.obs_shape), jnp.float32))

    def apply(self, params: Params, observation: jax.Array) -> tuple[jax.Array, jax.Array]:
        """(head, value) at ``observation``; ``distribution(head)`` is the policy there."""
        return self.module.apply(params, observation)

    def taken(self, data: dict[str, jax.Array]) -> jax.Array:
        """The actions whose log-probabilities the actors stored (Box: the unclipped sample)."""
        return data["raw_action"] if self.gaussian else data["action"]


def categorical(head: jax.Array) -> distrax.Distribution:
    return distrax.Categorical(logits=head)


def gaussian(head: jax.Array) -> distrax.Distribution:
    mean, log_std = jnp.split(head, 2, axis=-1)
    return distrax.MultivariateNormalDiag(mean, jnp.exp(log_std))


def make_network(
    spec: EnvSpec, hidden_sizes: Sequence[int], *, allow_box: bool, agent: str
) -> Network:
    """The actor-critic for ``spec``; refuses spaces it cannot handle, with the reason."""
    obs, actions = spec.observation_space, spec.action_space
    if not isinstance(obs, gymnasium.spaces.Box) or len(obs.shape) != 1:
        raise UnsupportedEnvironment(
            f"{agent} needs flat (1-d Box) observations; {spec.env_id} has {obs}"
        )
    hidden = tuple(int(h) for h in hidden_sizes)
    if isinstance(actions, gymnasium.spaces.Discrete):
        module = ActorCritic(hidden, int(actions.n), gaussian=False)
        return Network(module, categorical, tuple(obs.shape), False, None, None)
    if allow_box and isinstance(actions, gymnasium.spaces.Box) and len(actions.shape) == 1:
        module = ActorCritic(hidden, int(actions.shape[0]), gaussian=True)
        low, high = (np.asarray(b, np.float32) for b in (actions.low, actions.high))
        return Network(module, gaussian, tuple(obs.shape), True, low, high)
    kinds = "Discrete or 1-d Box" if allow_box else "Discrete"
    raise UnsupportedEnvironment(f"{agent} needs {kinds} actions; {spec.env_id} has {actions}")
