"""PPO's advantages (GAE across episode ends) and its minibatch loss.

GAE for each unroll (``shared/agents/actor_critic/sequences.py`` for ``valid`` and ``discount``)::

    delta_t = r_t + discount_t V(x_{t+1}) - V(x_t)
    A_t     = delta_t + discount_t * lambda_t * A_{t+1},   lambda_t = lambda * valid_{t+1}

``rlax.truncated_generalized_advantage_estimation`` runs the recursion; lambda_t = 0 before a step
that is no transition (an episode's final observation) stops the next episode's advantages
flowing back, so a truncated episode's last step bootstraps from V(final observation) alone,
and a terminated one's from nothing (discount 0). Steps that are no transition get weight 0.

The loss on one minibatch (cleanRL's ``ppo.py``)::

    ratio = pi(a|x) / mu(a|x)                              # mu: the actor's log_prob extra
    loss  = clipped surrogate(ratio, A) + value_cost * 0.5 max((V - R)^2, (V_clip - R)^2)
            - entropy_cost * H(pi(.|x))
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import rlax

from shared.agents.actor_critic.networks import Network, Params
from shared.agents.ppo.config import PPOConfig


def gae(
    values: jax.Array, reward: jax.Array, discount: jax.Array, valid: jax.Array, lambda_: float
) -> jax.Array:
    """Advantages (B, T) from ``values`` (B, T+1) and reward, discount, valid (B, T)."""
    next_valid = jnp.concatenate([valid[:, 1:], jnp.ones_like(valid[:, :1])], 1)
    lambdas = lambda_ * next_valid.astype(jnp.float32)
    advantages = jax.vmap(rlax.truncated_generalized_advantage_estimation)(
        reward, discount, lambdas, values
    )
    return advantages * valid


class Minibatch(NamedTuple):
    """Transitions, flattened over unrolls and time: every field (n, ...)."""

    observation: jax.Array  # the network's input (normalized when configured)
    action: jax.Array  # the action whose log_prob the actor stored
    log_prob: jax.Array  # the behaviour policy's
    advantage: jax.Array
    target: jax.Array  # the value target: advantage + V before the update
    value: jax.Array  # V before the update
    weight: jax.Array  # 1 for transitions, 0 for an episode's final step


def ppo_loss(
    network: Network, config: PPOConfig, params: Params, batch: Minibatch
) -> tuple[jax.Array, dict[str, jax.Array]]:
    w = batch.weight
    count = jnp.maximum(w.sum(), 1.0)
    head, value = network.apply(params, batch.observation)
    policy = network.distribution(head)
    log_ratio = policy.log_prob(batch.action) - batch.log_prob
    ratio = jnp.exp(log_ratio)
    advantage = batch.advantage
    if config.normalize_advantages:
        mean = jnp.sum(w * advantage) / count
        std = jnp.sqrt(jnp.sum(w * (advantage - mean) ** 2) / count)
        advantage = (advantage - mean) / (std + 1e-8)
    # rlax averages over all n: weighting by w * n / count makes it the mean over transitions
    pg_loss = rlax.clipped_surrogate_pg_loss(
        ratio, advantage * w * (len(w) / count), config.clip_epsilon
    )
    value_error = (value - batch.target) ** 2
    if config.clip_value:
        clipped = batch.value + jnp.clip(
            value - batch.value, -config.clip_epsilon, config.clip_epsilon
        )
        value_error = jnp.maximum(value_error, (clipped - batch.target) ** 2)
    value_loss = 0.5 * jnp.sum(w * value_error) / count
    entropy = jnp.sum(w * policy.entropy()) / count
    loss = pg_loss + config.value_cost * value_loss - config.entropy_cost * entropy
    metrics = {
        "loss": loss,
        "pg_loss": pg_loss,
        "value_loss": value_loss,
        "entropy": entropy,
        "approx_kl": jnp.sum(w * ((ratio - 1) - log_ratio)) / count,
        "clip_fraction": jnp.sum(w * (jnp.abs(ratio - 1) > config.clip_epsilon)) / count,
    }
    return loss, metrics
