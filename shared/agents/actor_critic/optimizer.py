"""The on-policy learners' optimizer: global-norm clipping, then Adam with a step size that can
decay linearly to 0 over the env steps the learner consumes (as IMPALA's paper and cleanRL's PPO
anneal it)."""

from __future__ import annotations

import optax


def clipped_adam(
    learning_rate: float,
    *,
    max_gradient_norm: float,
    adam_eps: float,
    decay_env_steps: int = 0,
    env_steps_per_update: int = 1,
    sgd_steps_per_update: int = 1,
) -> optax.GradientTransformation:
    """``decay_env_steps`` 0: a constant step size. Otherwise it reaches 0 after the updates that
    consume ``decay_env_steps`` env steps (``env_steps_per_update`` each, batch x unroll length),
    counted in Adam steps (``sgd_steps_per_update`` per update), and stays there."""
    schedule: float | optax.Schedule = learning_rate
    if decay_env_steps:
        updates = decay_env_steps / env_steps_per_update
        schedule = optax.linear_schedule(
            learning_rate, 0.0, max(1, int(updates * sgd_steps_per_update))
        )
    return optax.chain(
        optax.clip_by_global_norm(max_gradient_norm), optax.adam(schedule, eps=adam_eps)
    )


def unroll_optimizer(config, *, sgd_steps_per_update: int = 1) -> optax.GradientTransformation:
    """``clipped_adam`` from an on-policy config (IMPALA's, PPO's): its ``learning_rate``,
    ``max_gradient_norm``, ``adam_eps`` and ``learning_rate_decay_steps``, with updates of
    ``batch_size`` unrolls of ``unroll_length`` env steps."""
    return clipped_adam(
        config.learning_rate,
        max_gradient_norm=config.max_gradient_norm,
        adam_eps=config.adam_eps,
        decay_env_steps=config.learning_rate_decay_steps,
        env_steps_per_update=config.batch_size * config.unroll_length,
        sgd_steps_per_update=sgd_steps_per_update,
    )
