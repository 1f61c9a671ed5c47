"""Running mean and variance of observations, kept by the learner and published with the params.

The learner folds every batch's observations in (Chan et al.'s parallel update, as gymnasium's
``NormalizeObservation`` does per step) and publishes the statistics beside the network's
parameters, so that actors, evaluators and the learner normalize with the same numbers.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

CLIP = 10.0  # normalized observations are clipped to [-CLIP, CLIP], as in cleanRL
EPSILON = 1e-8


class RunningStats(NamedTuple):
    mean: jax.Array  # (*obs_shape,)
    var: jax.Array  # (*obs_shape,)
    count: jax.Array  # () float32: observations folded in (starts at a tiny prior)


def init_stats(obs_shape: tuple[int, ...]) -> RunningStats:
    return RunningStats(jnp.zeros(obs_shape), jnp.ones(obs_shape), jnp.float32(1e-4))


def update_stats(stats: RunningStats, x: jax.Array, weight: jax.Array) -> RunningStats:
    """Folds in the rows of ``x`` (n, *obs_shape) whose ``weight`` (n,) is 1 (0: left out)."""
    w = weight.reshape(weight.shape + (1,) * (x.ndim - 1)).astype(jnp.float32)
    n = jnp.maximum(w.sum(), 1e-8)
    mean = (w * x).sum(0) / n
    var = (w * (x - mean) ** 2).sum(0) / n
    delta = mean - stats.mean
    total = stats.count + n
    new_mean = stats.mean + delta * n / total
    m2 = stats.var * stats.count + var * n + delta**2 * stats.count * n / total
    return RunningStats(new_mean, m2 / total, total)


def normalize(mean: jax.Array, var: jax.Array, x: jax.Array) -> jax.Array:
    return jnp.clip((x - mean) / jnp.sqrt(var + EPSILON), -CLIP, CLIP)
