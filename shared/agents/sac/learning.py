"""The SAC learner's state and its pure, jitted update (``shared.interfaces.Learner``).

``update(state, batch)`` splits the request's ``k * batch_size`` items into k batches and scans
one SGD step over them: an Adam step of the twin critic on the soft Bellman target, then of the
policy against the updated critic, then of log(alpha), then the target critic's Polyak update.
``params(state)`` is only the policy's parameters: what actors need.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from shared.agents.continuous import ActionBounds
from shared.agents.sac import losses
from shared.agents.sac.config import SACConfig
from shared.agents.sac.networks import Networks, Params
from shared.interfaces import Batch, Learner


class TrainingState(NamedTuple):
    policy_params: Params
    critic_params: Params
    target_critic_params: Params
    log_alpha: jax.Array  # float32 scalar
    policy_opt_state: optax.OptState
    critic_opt_state: optax.OptState
    alpha_opt_state: optax.OptState
    step: jax.Array  # int32 scalar: SGD steps done
    rng: jax.Array


def make_learner(
    config: SACConfig, networks: Networks, obs_dim: int, bounds: ActionBounds
) -> Learner:
    policy_net, critic_net = networks
    action_dim = len(bounds.low)
    target_entropy = -config.target_entropy_scale * action_dim
    policy_opt = optax.adam(config.policy_learning_rate)
    critic_opt = optax.adam(config.critic_learning_rate)
    alpha_opt = optax.adam(config.alpha_learning_rate)

    def init(key: jax.Array) -> TrainingState:
        policy_key, critic_key, rng = jax.random.split(key, 3)
        obs = jnp.zeros((1, obs_dim), jnp.float32)
        policy_params = policy_net.init(policy_key, obs)
        critic_params = critic_net.init(critic_key, obs, jnp.zeros((1, action_dim), jnp.float32))
        log_alpha = jnp.asarray(np.log(config.init_alpha), jnp.float32)
        return TrainingState(
            policy_params,
            critic_params,
            critic_params,
            log_alpha,
            policy_opt.init(policy_params),
            critic_opt.init(critic_params),
            alpha_opt.init(log_alpha),
            jnp.int32(0),
            rng,
        )

    def sgd_step(state: TrainingState, batch: dict[str, jax.Array]):
        rng, next_key, policy_key = jax.random.split(state.rng, 3)
        obs, next_obs = batch["observation"], batch["next_observation"]  # (batch, obs_dim)
        action = bounds.to_policy(batch["action"])  # (batch, A), stored in the env's bounds
        alpha = jnp.exp(state.log_alpha)

        # critic: the soft Bellman target from the target critic and the policy's next action
        next_action, next_log_prob = losses.sample_action(
            *policy_net.apply(state.policy_params, next_obs), next_key
        )
        next_q = critic_net.apply(state.target_critic_params, next_obs, next_action)  # (2, batch)
        target = losses.soft_bellman_target(
            batch["reward"], batch["discount"], next_q, next_log_prob, alpha
        )

        def critic_objective(params):
            q = critic_net.apply(params, obs, action)  # (2, batch)
            return losses.critic_loss(q, target), q

        (c_loss, q), grads = jax.value_and_grad(critic_objective, has_aux=True)(state.critic_params)
        updates, critic_opt_state = critic_opt.update(grads, state.critic_opt_state)
        critic_params = optax.apply_updates(state.critic_params, updates)

        # policy: against the updated critic, with reparameterized actions
        def policy_objective(params):
            new_action, log_prob = losses.sample_action(*policy_net.apply(params, obs), policy_key)
            q_new = critic_net.apply(critic_params, obs, new_action)  # (2, batch)
            return losses.policy_loss(q_new, log_prob, alpha), log_prob

        (p_loss, log_prob), grads = jax.value_and_grad(policy_objective, has_aux=True)(
            state.policy_params
        )
        updates, policy_opt_state = policy_opt.update(grads, state.policy_opt_state)
        policy_params = optax.apply_updates(state.policy_params, updates)

        # temperature
        log_alpha, alpha_opt_state = state.log_alpha, state.alpha_opt_state
        a_loss = jnp.float32(0.0)
        if config.autotune:
            a_loss, grad = jax.value_and_grad(losses.alpha_loss)(
                log_alpha, log_prob, target_entropy
            )
            updates, alpha_opt_state = alpha_opt.update(grad, alpha_opt_state)
            log_alpha = optax.apply_updates(log_alpha, updates)

        target_critic_params = optax.incremental_update(
            critic_params, state.target_critic_params, config.tau
        )
        metrics = {
            "critic_loss": c_loss,
            "policy_loss": p_loss,
            "alpha_loss": a_loss,
            "alpha": alpha,
            "entropy": -jnp.mean(log_prob),
            "q_mean": jnp.mean(q),
        }
        new_state = TrainingState(
            policy_params,
            critic_params,
            target_critic_params,
            log_alpha,
            policy_opt_state,
            critic_opt_state,
            alpha_opt_state,
            state.step + 1,
            rng,
        )
        return new_state, metrics

    def update(state: TrainingState, batch: Batch):
        data = batch.data
        k = len(data["action"]) // config.batch_size  # static: the request's size
        stacked = jax.tree.map(lambda x: x.reshape(k, config.batch_size, *x.shape[1:]), data)
        state, metrics = jax.lax.scan(sgd_step, state, stacked)
        return state, jax.tree.map(jnp.mean, metrics), None

    return Learner(
        table=config.table_name,
        init=jax.jit(init),
        update=jax.jit(update),
        params=lambda state: state.policy_params,
    )
