"""The DQN policies: epsilon-greedy for actors, with the exploration schedule in the policy state.

Epsilons come from one of three places: the linear schedule over the actor's own env steps (all
its envs counted), Ape-X's fixed spread over every env of the fleet (``ape_x_spread``), or the
fixed ``evaluation_epsilon`` of evaluators. Everything runs in one jitted call per vector step.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from shared.agents.dqn.config import DQNConfig
from shared.agents.dqn.networks import Params, QNetwork
from shared.interfaces import Placement, Policy


class ActorState(NamedTuple):
    key: jax.Array
    epsilon: jax.Array  # (num_envs,) float32: the fixed epsilons (Ape-X, evaluation)
    steps: jax.Array  # int32: env steps so far, saturating at epsilon_decay_steps


def epsilon_greedy(q: jax.Array, epsilon: jax.Array, key: jax.Array) -> jax.Array:
    """Per row: a uniform random action with probability epsilon, else argmax q. (batch,) int32."""
    explore_key, action_key = jax.random.split(key)
    batch, num_actions = q.shape  # (batch, num_actions)
    random_actions = jax.random.randint(action_key, (batch,), 0, num_actions)  # (batch,)
    explore = jax.random.uniform(explore_key, (batch,)) < epsilon  # (batch,)
    return jnp.where(explore, random_actions, jnp.argmax(q, axis=-1)).astype(jnp.int32)


def fixed_epsilons(config: DQNConfig, placement: Placement, *, evaluation: bool) -> jax.Array:
    """(num_envs,): each env is one Ape-X "actor", index actor_index * num_envs + e of the fleet."""
    n = placement.num_envs
    if evaluation:
        return jnp.full(n, config.evaluation_epsilon, jnp.float32)
    if not config.ape_x_spread:
        return jnp.full(n, config.epsilon_start, jnp.float32)  # unused: the schedule decides
    total = placement.num_actors * n
    index = placement.actor_index * n + jnp.arange(n)
    spread = index / (total - 1) if total > 1 else jnp.zeros(n)
    return (config.ape_x_base ** (1.0 + config.ape_x_alpha * spread)).astype(jnp.float32)


def make_policy(network: QNetwork, config: DQNConfig, *, evaluation: bool = False) -> Policy:
    """The actors' policy (``evaluation=False``) or the evaluators' one."""
    scheduled = not evaluation and not config.ape_x_spread
    decay = config.epsilon_decay_steps

    def init(key: jax.Array, placement: Placement) -> ActorState:
        epsilon = fixed_epsilons(config, placement, evaluation=evaluation)
        steps = min(placement.steps_done, max(decay, 1))  # a resumed run carries on its decay
        return ActorState(key=jnp.asarray(key), epsilon=epsilon, steps=jnp.int32(steps))

    @jax.jit
    def step(params: Params, state: ActorState, observation: jax.Array, first: jax.Array):
        del first  # DQN keeps no recurrent state
        key, policy_key = jax.random.split(state.key)
        q = network.apply(params, observation)  # (num_envs, num_actions)
        epsilon = state.epsilon
        if scheduled:
            frac = jnp.minimum(1.0, state.steps / decay) if decay > 0 else 1.0
            start, end = config.epsilon_start, config.epsilon_end
            epsilon = jnp.full_like(epsilon, start + frac * (end - start))
        actions = epsilon_greedy(q, epsilon, policy_key)  # (num_envs,)
        steps = jnp.minimum(state.steps + q.shape[0], max(decay, 1))
        return actions, {}, ActorState(key, state.epsilon, steps.astype(jnp.int32))

    return Policy(init=init, step=step)
