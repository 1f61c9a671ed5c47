"""The TD3 learner's state and its pure, jitted update (``shared.interfaces.Learner``).

``update(state, batch)`` splits the request's ``k * batch_size`` items into k batches and scans
one SGD step over them: an Adam step of the twin critic on the smoothed clipped double-Q target,
and every ``policy_delay`` steps (``lax.cond``: only one branch runs) an Adam step of the policy
and the Polyak update of both target networks. ``params(state)`` is only the policy's.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from shared.agents.continuous import ActionBounds
from shared.agents.td3 import losses
from shared.agents.td3.config import TD3Config
from shared.agents.td3.networks import Networks, Params
from shared.interfaces import Batch, Learner


class TrainingState(NamedTuple):
    policy_params: Params
    target_policy_params: Params
    critic_params: Params
    target_critic_params: Params
    policy_opt_state: optax.OptState
    critic_opt_state: optax.OptState
    step: jax.Array  # int32 scalar: SGD (critic) steps done
    rng: jax.Array


def make_learner(
    config: TD3Config, networks: Networks, obs_dim: int, bounds: ActionBounds
) -> Learner:
    policy_net, critic_net = networks
    action_dim = len(bounds.low)
    policy_opt = optax.adam(config.policy_learning_rate)
    critic_opt = optax.adam(config.critic_learning_rate)

    def init(key: jax.Array) -> TrainingState:
        policy_key, critic_key, rng = jax.random.split(key, 3)
        obs = jnp.zeros((1, obs_dim), jnp.float32)
        policy_params = policy_net.init(policy_key, obs)
        critic_params = critic_net.init(critic_key, obs, jnp.zeros((1, action_dim), jnp.float32))
        return TrainingState(
            policy_params,
            policy_params,
            critic_params,
            critic_params,
            policy_opt.init(policy_params),
            critic_opt.init(critic_params),
            jnp.int32(0),
            rng,
        )

    def policy_step(state: TrainingState, obs: jax.Array):
        def objective(params):
            return losses.policy_loss(
                critic_net.apply(state.critic_params, obs, policy_net.apply(params, obs))
            )

        loss, grads = jax.value_and_grad(objective)(state.policy_params)
        updates, opt_state = policy_opt.update(grads, state.policy_opt_state)
        policy_params = optax.apply_updates(state.policy_params, updates)
        return state._replace(
            policy_params=policy_params,
            policy_opt_state=opt_state,
            target_policy_params=optax.incremental_update(
                policy_params, state.target_policy_params, config.tau
            ),
            target_critic_params=optax.incremental_update(
                state.critic_params, state.target_critic_params, config.tau
            ),
        ), loss

    def sgd_step(state: TrainingState, batch: dict[str, jax.Array]):
        rng, noise_key = jax.random.split(state.rng)
        obs, next_obs = batch["observation"], batch["next_observation"]  # (batch, obs_dim)
        action = bounds.to_policy(batch["action"])  # (batch, A), stored in the env's bounds

        target_action = policy_net.apply(state.target_policy_params, next_obs)  # (batch, A)
        noise = config.policy_noise * jax.random.normal(noise_key, target_action.shape)
        next_action = losses.smoothed_target_action(target_action, noise, config.noise_clip)
        next_q = critic_net.apply(state.target_critic_params, next_obs, next_action)  # (2, batch)
        target = losses.clipped_double_q_target(batch["reward"], batch["discount"], next_q)

        def critic_objective(params):
            q = critic_net.apply(params, obs, action)  # (2, batch)
            return losses.critic_loss(q, target), q

        (c_loss, q), grads = jax.value_and_grad(critic_objective, has_aux=True)(state.critic_params)
        updates, critic_opt_state = critic_opt.update(grads, state.critic_opt_state)
        state = state._replace(
            critic_params=optax.apply_updates(state.critic_params, updates),
            critic_opt_state=critic_opt_state,
            step=state.step + 1,
            rng=rng,
        )
        state, p_loss = jax.lax.cond(
            state.step % config.policy_delay == 0,
            policy_step,
            lambda s, o: (s, jnp.float32(jnp.nan)),  # nan: no policy step (the mean skips it)
            state,
            obs,
        )
        return state, {"critic_loss": c_loss, "policy_loss": p_loss, "q_mean": jnp.mean(q)}

    def update(state: TrainingState, batch: Batch):
        data = batch.data
        k = len(data["action"]) // config.batch_size  # static: the request's size
        stacked = jax.tree.map(lambda x: x.reshape(k, config.batch_size, *x.shape[1:]), data)
        state, metrics = jax.lax.scan(sgd_step, state, stacked)
        policy_steps = ~jnp.isnan(metrics["policy_loss"])  # (k,): a request of k < policy_delay
        metrics["policy_loss"] = jnp.sum(  # batches may have none; then 0, not nan in the logs
            jnp.where(policy_steps, metrics["policy_loss"], 0.0)
        ) / jnp.maximum(jnp.sum(policy_steps), 1)
        return state, jax.tree.map(jnp.mean, metrics), None

    return Learner(
        table=config.table_name,
        init=jax.jit(init),
        update=jax.jit(update),
        params=lambda state: state.policy_params,
    )
