"""The IMPALA learner's state and its pure, jitted update (``shared.interfaces.Learner``).

``update(state, batch)`` takes one batch of ``batch_size`` unrolls from the queue (each consumed
once) and makes one Adam step on the V-trace loss (``losses.py``), gradients clipped to a global
norm. What it publishes: the network's parameters (``GET /params``), in the actor-critic
policies' form.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from shared.agents.actor_critic.networks import Network, Params
from shared.agents.actor_critic.optimizer import unroll_optimizer
from shared.agents.impala.config import IMPALAConfig
from shared.agents.impala.losses import impala_loss
from shared.interfaces import Batch, Learner


class TrainingState(NamedTuple):
    params: Params
    opt_state: optax.OptState
    step: jax.Array  # int32 scalar: updates done


def make_learner(config: IMPALAConfig, network: Network) -> Learner:
    optimizer = unroll_optimizer(config)
    loss_fn = functools.partial(impala_loss, network, config)
    obs_shape = network.obs_shape

    def init(key: jax.Array) -> TrainingState:
        params = network.init(key)
        return TrainingState(params, optimizer.init(params), jnp.int32(0))

    @jax.jit
    def update(state: TrainingState, batch: Batch):
        (_, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params, batch.data)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        metrics["grad_norm"] = optax.global_norm(grads)
        return TrainingState(params, opt_state, state.step + 1), metrics, None

    def params(state: TrainingState):
        zeros = jnp.zeros(obs_shape)
        return {"network": state.params, "obs_mean": zeros, "obs_var": zeros + 1.0}

    return Learner(table=config.table_name, init=jax.jit(init), update=update, params=params)
