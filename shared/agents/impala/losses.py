"""IMPALA's loss on one batch of unrolls: V-trace targets, policy gradient, value, entropy.

For each unroll (time t = 0..T-1, ``shared/agents/actor_critic/sequences.py`` for ``valid``)::

    rho_t   = valid_t * pi(a_t|x_t) / mu(a_t|x_t)           # mu: the actor's log_prob extra
    v_s     = V(x_s) + sum_t gamma^(t-s) (prod_{i<t} c_i) min(rho_bar, rho_t) delta_t      (V-trace)
    A_s     = min(rho_pg, rho_s) * (r_s + gamma_s v_{s+1} - V(x_s))
    loss    = -sum valid A_s log pi(a_s|x_s) + baseline_cost * 0.5 sum valid (v_s - V(x_s))^2
              - entropy_cost * sum valid H(pi(.|x_s))        # each sum / sum valid

``rlax.vtrace_td_error_and_advantage`` computes v_s - V(x_s) and A_s. A step that is no
transition (an episode's final observation) gets importance weight 0: no TD error of its own, no
trace through it, so the previous step bootstraps from V(final observation) (truncation) or
from nothing (termination, discount 0).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import rlax

from shared.agents.actor_critic.networks import Network, Params
from shared.agents.actor_critic.sequences import transitions
from shared.agents.impala.config import IMPALAConfig


def vtrace_targets(
    values: jax.Array,
    reward: jax.Array,
    discount: jax.Array,
    rho: jax.Array,
    config: IMPALAConfig,
) -> rlax.VTraceOutput:
    """V-trace for a batch: ``values`` (B, T+1), the rest (B, T); errors are v_s - V(x_s)."""

    def one(v, r, d, w):
        return rlax.vtrace_td_error_and_advantage(
            v[:-1], v[1:], r, d, w,
            lambda_=config.vtrace_lambda,
            clip_rho_threshold=config.clip_rho_threshold,
            clip_pg_rho_threshold=config.clip_pg_rho_threshold,
        )  # fmt: skip

    return jax.vmap(one)(values, reward, discount, rho)


def impala_loss(
    network: Network, config: IMPALAConfig, params: Params, data: dict[str, jax.Array]
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """The loss on a batch of items (each field (B, L, ...)) and its parts as metrics."""
    steps = transitions(data, config.discount)  # (B, T)
    weight = steps.valid.astype(jnp.float32)
    count = jnp.maximum(weight.sum(), 1.0)
    head, values = network.apply(params, data["observation"])  # values (B, L)
    policy = network.distribution(head[:, :-1])  # at x_0..x_{T-1}
    log_prob = policy.log_prob(network.taken(data)[:, :-1])  # (B, T)
    rho = jnp.exp(jax.lax.stop_gradient(log_prob) - data["log_prob"][:, :-1]) * weight
    vtrace = vtrace_targets(values, steps.reward, steps.discount, rho, config)
    pg_loss = -jnp.sum(weight * log_prob * jax.lax.stop_gradient(vtrace.pg_advantage)) / count
    value_loss = 0.5 * jnp.sum(weight * vtrace.errors**2) / count
    entropy = jnp.sum(weight * policy.entropy()) / count
    loss = pg_loss + config.baseline_cost * value_loss - config.entropy_cost * entropy
    metrics = {
        "loss": loss,
        "pg_loss": pg_loss,
        "value_loss": value_loss,
        "entropy": entropy,
        "rho_mean": jnp.sum(rho) / count,
        "valid_fraction": weight.mean(),
    }
    return loss, metrics
