"""The DQN learner's state and its pure, jitted update (``shared.interfaces.Learner``).

``update(state, batch)`` splits the request's ``k * batch_size`` items into k batches and scans
one SGD step over them: an Adam step on the double DQN loss, then the target network's update (a
copy every ``target_update_period`` steps, or Polyak averaging at rate ``tau`` when ``tau > 0``).
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from shared.agents.dqn.config import DQNConfig
from shared.agents.dqn.losses import double_dqn_loss
from shared.agents.dqn.networks import Params, QNetwork, init_params
from shared.interfaces import Batch, Learner

Metrics = dict[str, jax.Array]


class TrainingState(NamedTuple):
    params: Params
    target_params: Params
    opt_state: optax.OptState
    step: jax.Array  # int32 scalar: SGD steps done
    rng: jax.Array


def make_learner(config: DQNConfig, network: QNetwork, obs_dim: int) -> Learner:
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

    def init(key: jax.Array) -> TrainingState:
        init_key, rng = jax.random.split(key)
        params = init_params(network, init_key, obs_dim)
        return TrainingState(params, params, optimizer.init(params), jnp.int32(0), rng)

    def sgd_step(state: TrainingState, batch: dict[str, jax.Array]):
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
        return TrainingState(params, target, opt_state, count, rng), (metrics, priorities)

    def update(state: TrainingState, batch: Batch):
        data = dict(batch.data)
        if config.prioritized:  # importance weights correct the non-uniform sampling
            data["probabilities"] = batch.probabilities
        k = len(data["action"]) // config.batch_size  # static: the request's size
        stacked = jax.tree.map(lambda x: x.reshape(k, config.batch_size, *x.shape[1:]), data)
        state, (metrics, priorities) = jax.lax.scan(sgd_step, state, stacked)
        metrics = jax.tree.map(jnp.mean, metrics)
        return state, metrics, priorities.reshape(-1) if config.prioritized else None

    return Learner(
        table=config.table_name,
        init=jax.jit(init),
        update=jax.jit(update),
        params=lambda state: state.params,
    )
