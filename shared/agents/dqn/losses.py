"""Double DQN loss on n-step transitions, with importance weights for prioritized replay.

An item holds ``reward = sum_{k<m} gamma^k r_{t+k}`` and ``discount = gamma^m`` (0 when the
episode terminated within the m <= n steps), so the target is::

    target = reward + discount * Q_target(next_obs, argmax_a Q_online(next_obs, a))
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from shared.agents.dqn.networks import Params, QNetwork

Batch = dict[str, jax.Array]


def importance_weights(probabilities: jax.Array, exponent: float) -> jax.Array:
    """(N * P(i))**-beta / max_j (N * P(j))**-beta; N cancels in the normalisation."""
    weights = (probabilities.astype(jnp.float32) + 1e-10) ** -exponent  # (batch,)
    return weights / jnp.max(weights)


def double_dqn_loss(
    network: QNetwork,
    params: Params,
    target_params: Params,
    batch: Batch,
    *,
    huber_delta: float,
    importance_sampling_exponent: float,
) -> tuple[jax.Array, tuple[jax.Array, dict[str, jax.Array]]]:
    """Returns ``(loss, (|td_error| (batch,), metrics))``; differentiate w.r.t. ``params``."""
    q = network.apply(params, batch["observation"])  # (batch, num_actions)
    q_next_online = network.apply(params, batch["next_observation"])  # (batch, num_actions)
    q_next_target = network.apply(target_params, batch["next_observation"])
    best_next = jnp.argmax(q_next_online, axis=-1)  # (batch,)
    next_value = jnp.take_along_axis(q_next_target, best_next[:, None], axis=-1)[:, 0]
    target = jax.lax.stop_gradient(batch["reward"] + batch["discount"] * next_value)  # (batch,)
    action = batch["action"].astype(jnp.int32)
    q_taken = jnp.take_along_axis(q, action[:, None], axis=-1)[:, 0]  # (batch,)
    td_error = target - q_taken  # (batch,)

    losses = optax.huber_loss(td_error, delta=huber_delta)  # (batch,)
    if "probabilities" in batch:
        losses = losses * importance_weights(batch["probabilities"], importance_sampling_exponent)
    loss = jnp.mean(losses)
    metrics = {
        "loss": loss,
        "q_mean": jnp.mean(q_taken),
        "td_abs_mean": jnp.mean(jnp.abs(td_error)),
    }
    return loss, (jnp.abs(td_error), metrics)
