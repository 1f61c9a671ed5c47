"""TD3's losses: the smoothed clipped double-Q target and the deterministic policy gradient.

With the target policy mu', twin target critics Q'_1, Q'_2 and clipped Gaussian noise::

    a'          = clip(mu'(s') + clip(eps, -c, c), -1, 1),   eps ~ N(0, policy_noise^2)
    y           = r + discount * min_k Q'_k(s', a')
    critic loss = sum_k mean (Q_k(s, a) - y)^2
    policy loss = -mean Q_1(s, mu(s))          (every policy_delay critic steps)

``discount`` is the item's gamma^m, 0 when the episode terminated (shared/adders.py).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def smoothed_target_action(
    target_action: jax.Array, noise: jax.Array, noise_clip: float
) -> jax.Array:
    """clip(mu'(s') + clip(noise, -c, c), -1, 1); ``noise`` is already scaled by policy_noise."""
    return jnp.clip(target_action + jnp.clip(noise, -noise_clip, noise_clip), -1.0, 1.0)


def clipped_double_q_target(reward: jax.Array, discount: jax.Array, next_q: jax.Array) -> jax.Array:
    """y = r + discount * min_k Q'_k(s', a'); next_q is (2, batch)."""
    return jax.lax.stop_gradient(reward + discount * jnp.min(next_q, axis=0))


def critic_loss(q: jax.Array, target: jax.Array) -> jax.Array:
    """Each critic's mean squared error to the target, summed; q is (2, batch)."""
    return jnp.sum(jnp.mean((q - target[None]) ** 2, axis=-1))


def policy_loss(q: jax.Array) -> jax.Array:
    """-mean Q_1(s, mu(s)): the first critic only, as in the paper; q is (2, batch)."""
    return -jnp.mean(q[0])
