"""The PPO learner's state and its pure, jitted update (``shared.interfaces.Learner``).

``update(state, batch)`` takes one batch of ``batch_size`` unrolls from the queue (each consumed
once): it folds their observations into the running statistics (when normalizing), computes
values and GAE advantages with the parameters before the update, then runs ``update_epochs``
passes of ``num_minibatches`` shuffled minibatches of Adam steps on the PPO loss. What it
publishes: the network's parameters and the observation statistics (``GET /params``).
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from shared.agents.actor_critic.actor import observe
from shared.agents.actor_critic.networks import Network, Params
from shared.agents.actor_critic.normalization import RunningStats, init_stats, update_stats
from shared.agents.actor_critic.optimizer import unroll_optimizer
from shared.agents.actor_critic.sequences import transitions
from shared.agents.ppo.config import PPOConfig
from shared.agents.ppo.losses import Minibatch, gae, ppo_loss
from shared.interfaces import Batch, Learner


class TrainingState(NamedTuple):
    params: Params
    opt_state: optax.OptState
    obs_stats: RunningStats
    step: jax.Array  # int32 scalar: updates (batches of unrolls) done
    rng: jax.Array


def make_learner(config: PPOConfig, network: Network) -> Learner:
    sgd_steps_per_update = config.update_epochs * config.num_minibatches
    optimizer = unroll_optimizer(config, sgd_steps_per_update=sgd_steps_per_update)
    loss_fn = functools.partial(ppo_loss, network, config)
    normalized = config.normalize_observations
    obs_shape = network.obs_shape

    def init(key: jax.Array) -> TrainingState:
        init_key, rng = jax.random.split(key)
        params = network.init(init_key)
        stats = init_stats(obs_shape)
        return TrainingState(params, optimizer.init(params), stats, jnp.int32(0), rng)

    def published(params: Params, stats: RunningStats):
        return {"network": params, "obs_mean": stats.mean, "obs_var": stats.var}

    def sgd_step(carry, minibatch: Minibatch):
        params, opt_state = carry
        (_, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, minibatch)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), metrics

    @jax.jit
    def update(state: TrainingState, batch: Batch):
        data = batch.data
        stats = state.obs_stats
        if normalized:
            flat = data["observation"].reshape(-1, *obs_shape)
            stats = update_stats(stats, flat, data["mask"].reshape(-1))
        x = observe(published(state.params, stats), data["observation"], normalized)  # (B, L, ..)
        steps = transitions(data, config.discount)  # (B, T)
        _, values = network.apply(state.params, x)  # (B, L)
        reward = steps.reward * config.reward_scale
        advantages = gae(values, reward, steps.discount, steps.valid, config.gae_lambda)

        def flat(a):  # (B, T, ...) -> (B * T, ...)
            return a.reshape(-1, *a.shape[2:])

        everything = Minibatch(
            observation=flat(x[:, :-1]),
            action=flat(network.taken(data)[:, :-1]),
            log_prob=flat(data["log_prob"][:, :-1]),
            advantage=flat(advantages),
            target=flat(advantages + values[:, :-1]),
            value=flat(values[:, :-1]),
            weight=flat(steps.valid.astype(jnp.float32)),
        )
        n = everything.weight.shape[0]
        rng, *keys = jax.random.split(state.rng, config.update_epochs + 1)

        def epoch(carry, key):
            order = jax.random.permutation(key, n).reshape(config.num_minibatches, -1)
            minibatches = jax.tree.map(lambda a: a[order], everything)
            return jax.lax.scan(sgd_step, carry, minibatches)

        (params, opt_state), metrics = jax.lax.scan(
            epoch, (state.params, state.opt_state), jnp.stack(keys)
        )
        metrics = jax.tree.map(jnp.mean, metrics)
        metrics["valid_fraction"] = everything.weight.mean()
        new = TrainingState(params, opt_state, stats, state.step + 1, rng)
        return new, metrics, None

    def params(state: TrainingState):
        return published(state.params, state.obs_stats)

    return Learner(table=config.table_name, init=jax.jit(init), update=update, params=params)
