"""The SAC policies: a sample of the tanh-squashed Gaussian for actors, its mode for evaluators.

Actors act uniformly at random for their first ``random_steps`` env steps (cleanRL's
learning_starts), then sample; both in one jitted call per vector step. Actions leave in the
env's bounds (``ActionBounds.to_env``), as the contract asks.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from shared.agents.continuous import ActionBounds, ExplorationState, random_start
from shared.agents.sac import losses
from shared.agents.sac.config import SACConfig
from shared.agents.sac.networks import GaussianPolicy, Params
from shared.interfaces import Policy


def make_policy(
    network: GaussianPolicy, config: SACConfig, bounds: ActionBounds, *, evaluation: bool = False
) -> Policy:
    """The actors' policy (``evaluation=False``) or the evaluators' (tanh of the mean)."""
    init, explore = random_start(config)

    @jax.jit
    def step(params: Params, state: ExplorationState, observation: jax.Array, first: jax.Array):
        del first  # no recurrent state
        mean, log_std = network.apply(params, observation)  # (num_envs, A) each
        if evaluation:
            return bounds.to_env(jnp.tanh(mean)), {}, state
        key, sample_key, uniform_key = jax.random.split(state.key, 3)
        action, _ = losses.sample_action(mean, log_std, sample_key)  # (num_envs, A) in [-1, 1]
        action, steps = explore(state, uniform_key, action)
        return bounds.to_env(action), {}, ExplorationState(key, steps)

    return Policy(init=init, step=step)
