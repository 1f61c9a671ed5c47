"""The DQN learner's state and its pure, jitted update.

``sgd_step(state, batch) -> (state, metrics, priorities)`` does one Adam step on the double DQN
loss, then updates the target network: a copy every ``target_update_period`` steps, or Polyak
averaging at rate ``tau`` when ``tau > 0``. ``sgd_steps`` scans it over batches stacked on axis 0.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from shared.agents.dqn.config import DQNConfig
from shared.agents.dqn.losses import Batch, double_dqn_loss
from shared.agents.dqn.networks import Params, QNetwork, init_params

Metrics = dict[str, jax.Array]


class TrainingState(NamedTuple):
    params: Params
    target_params: Params
    opt_state: optax.OptState
    step: jax.Array  # int32 scalar: SGD steps done
    rng: jax.Array


class DQNLearner(NamedTuple):
    """The pure functions of the learner; the learner service owns the loop and the state."""

    init: Callable[[jax.Array, int], TrainingState]
    sgd_step: Callable[[TrainingState, Batch], tuple[TrainingState, Metrics, jax.Array]]
    sgd_steps: Callable[[TrainingState, Batch], tuple[TrainingState, Metrics, jax.Array]]


def make_learner(config: DQNConfig, network: QNetwork) -> DQNLearner:
    optimizer = optax.chain(
        optax.clip_by_global_norm(config.max_gradient_norm),
        optax.adam(config.learning_rate, eps=config.adam_eps),
    )
    loss_fn = functools.partial(
        double_dqn_loss,
        network,
        huber_delta=config.huber_delta,
        importance_sampling_exponent=config.importance_sampling_exponent,
    )

    def init(rng: jax.Array, obs_dim: int) -> TrainingState:
        init_rng, rng = jax.random.split(rng)
        params = init_params(network, init_rng, obs_dim)
        return TrainingState(params, params, optimizer.init(params), jnp.int32(0), rng)

    def step(state: TrainingState, batch: Batch) -> tuple[TrainingState, Metrics, jax.Array]:
        grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
        (_, (abs_td, metrics)), grads = grad_fn(state.params, state.target_params, batch)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        count = state.step + 1
        if config.tau > 0:
            target = optax.incremental_update(params, state.target_params, config.tau)
        else:
            target = optax.periodic_update(
                params, state.target_params, count, config.target_update_period
            )
        metrics["grad_norm"] = optax.tree.norm(grads)
        rng, _ = jax.random.split(state.rng)
        priorities = abs_td + config.priority_eps  # (batch,)
        return TrainingState(params, target, opt_state, count, rng), metrics, priorities

    def steps(state: TrainingState, batches: Batch) -> tuple[TrainingState, Metrics, jax.Array]:
        """Leaves of ``batches`` are (num_steps, batch, ...); priorities are (num_steps, batch)."""

        def body(state: TrainingState, batch: Batch):
            state, metrics, priorities = step(state, batch)
            return state, (metrics, priorities)

        state, (metrics, priorities) = jax.lax.scan(body, state, batches)
        return state, jax.tree.map(jnp.mean, metrics), priorities

    return DQNLearner(
        init=jax.jit(init, static_argnums=1), sgd_step=jax.jit(step), sgd_steps=jax.jit(steps)
    )
