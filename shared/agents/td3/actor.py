"""The TD3 policies: mu(s) plus clipped Gaussian noise for actors, mu(s) for evaluators.

Actors act uniformly at random for their first ``random_steps`` env steps (cleanRL's
learning_starts), then add ``exploration_noise``; both in one jitted call per vector step.
Actions leave in the env's bounds (``ActionBounds.to_env``), as the contract asks.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from shared.agents.continuous import ActionBounds, ExplorationState, random_start
from shared.agents.td3.config import TD3Config
from shared.agents.td3.networks import DeterministicPolicy, Params
from shared.interfaces import Policy


def make_policy(
    network: DeterministicPolicy,
    config: TD3Config,
    bounds: ActionBounds,
    *,
    evaluation: bool = False,
) -> Policy:
    """The actors' policy (``evaluation=False``) or the evaluators' (no noise)."""
    init, explore = random_start(config)

    @jax.jit
    def step(params: Params, state: ExplorationState, observation: jax.Array, first: jax.Array):
        del first  # no recurrent state
        action = network.apply(params, observation)  # (num_envs, A) in [-1, 1]
        if evaluation:
            return bounds.to_env(action), {}, state
        key, noise_key, uniform_key = jax.random.split(state.key, 3)
        noise = config.exploration_noise * jax.random.normal(noise_key, action.shape)
        action = jnp.clip(action + noise, -1.0, 1.0)
        action, steps = explore(state, uniform_key, action)
        return bounds.to_env(action), {}, ExplorationState(key, steps)

    return Policy(init=init, step=step)
