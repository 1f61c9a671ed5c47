"""SAC's losses: the tanh-squashed Gaussian, the soft Bellman target, the three objectives.

The policy samples u ~ N(mean, std) and acts a = tanh(u) in [-1, 1]; the change of variables
gives its log-density (the "tanh correction", SAC paper appendix C)::

    log pi(a | s) = sum_i [ log N(u_i; mean_i, std_i) - log(1 - tanh(u_i)^2) ]

(distrax's Tanh bijector computes log(1 - tanh(u)^2) = 2 (log 2 - u - softplus(-2u)) stably).
With twin critics Q_1, Q_2, their Polyak-averaged targets Q'_k and the temperature alpha::

    y            = r + discount * (min_k Q'_k(s', a') - alpha * log pi(a' | s')),  a' ~ pi(s')
    critic loss  = sum_k mean (Q_k(s, a) - y)^2
    policy loss  = mean (alpha * log pi(a~ | s) - min_k Q_k(s, a~)),              a~ ~ pi(s)
    alpha loss   = mean (-log alpha * (log pi(a~ | s) + target_entropy))

``discount`` is the item's gamma^m, 0 when the episode terminated (shared/adders.py).
"""

from __future__ import annotations

import distrax
import jax
import jax.numpy as jnp


def tanh_gaussian(mean: jax.Array, log_std: jax.Array) -> distrax.Distribution:
    """The policy's distribution over [-1, 1]^A; event shape (A,), batch shape (batch,)."""
    base = distrax.MultivariateNormalDiag(mean, jnp.exp(log_std))
    return distrax.Transformed(base, distrax.Block(distrax.Tanh(), ndims=1))


def sample_action(mean: jax.Array, log_std: jax.Array, key: jax.Array):
    """(action in [-1, 1] (batch, A), log pi(action) (batch,)), reparameterized."""
    return tanh_gaussian(mean, log_std).sample_and_log_prob(seed=key)


def soft_bellman_target(
    reward: jax.Array,
    discount: jax.Array,
    next_q: jax.Array,
    next_log_prob: jax.Array,
    alpha: jax.Array,
) -> jax.Array:
    """y = r + discount * (min_k Q'_k(s', a') - alpha * log pi(a'|s')); next_q is (2, batch)."""
    soft_value = jnp.min(next_q, axis=0) - alpha * next_log_prob  # (batch,)
    return jax.lax.stop_gradient(reward + discount * soft_value)


def critic_loss(q: jax.Array, target: jax.Array) -> jax.Array:
    """Each critic's mean squared error to the target, summed; q is (2, batch)."""
    return jnp.sum(jnp.mean((q - target[None]) ** 2, axis=-1))


def policy_loss(q: jax.Array, log_prob: jax.Array, alpha: jax.Array) -> jax.Array:
    """mean(alpha * log pi - min_k Q_k) over the policy's own actions; q is (2, batch)."""
    return jnp.mean(alpha * log_prob - jnp.min(q, axis=0))


def alpha_loss(log_alpha: jax.Array, log_prob: jax.Array, target_entropy: float) -> jax.Array:
    """Raises alpha while the entropy -log pi is below target_entropy, lowers it above."""
    return -jnp.mean(log_alpha * jax.lax.stop_gradient(log_prob + target_entropy))
