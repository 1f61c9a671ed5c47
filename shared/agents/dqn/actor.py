"""Policies as pure jitted functions; the actor service runs the environment loop."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from shared.agents.dqn.networks import Params, QNetwork

Policy = Callable[[Params, jax.Array, jax.Array, jax.Array], jax.Array]
GreedyPolicy = Callable[[Params, jax.Array], jax.Array]


def make_policy(network: QNetwork) -> Policy:
    """``policy(params, observations, epsilons, key) -> actions``, epsilon-greedy per row."""

    @jax.jit
    def policy(params: Params, observations: jax.Array, epsilons: jax.Array, key: jax.Array):
        q = network.apply(params, observations)  # (batch, num_actions)
        explore_key, action_key = jax.random.split(key)
        batch, num_actions = q.shape
        random_actions = jax.random.randint(action_key, (batch,), 0, num_actions)  # (batch,)
        explore = jax.random.uniform(explore_key, (batch,)) < epsilons  # (batch,)
        return jnp.where(explore, random_actions, jnp.argmax(q, axis=-1)).astype(jnp.int32)

    return policy


def make_greedy_policy(network: QNetwork) -> GreedyPolicy:
    """``greedy(params, observations) -> argmax_a Q(observation, a)``, shape (batch,) int32."""

    @jax.jit
    def greedy(params: Params, observations: jax.Array) -> jax.Array:
        return jnp.argmax(network.apply(params, observations), axis=-1).astype(jnp.int32)

    return greedy
