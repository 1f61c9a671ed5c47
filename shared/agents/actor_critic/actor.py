"""The policies of IMPALA and PPO: sample (training) or take the mode (evaluation), batched.

``params`` is what the learner publishes: ``{"network": ..., "obs_mean": ..., "obs_var": ...}``;
with ``normalize_observations`` the policy normalizes by those statistics, as the learner does.
The training policy returns the log-probability of its action as the ``log_prob`` extra (the
behaviour policy that V-trace and PPO's ratio correct for). For Box actions the sample is stored
as ``raw_action`` and the environment gets it clipped to the bounds: the log-probability belongs to
the sample, as in cleanRL (whose ``ClipAction`` wrapper clips it on the way to the environment).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from shared.agents.actor_critic.networks import Network
from shared.agents.actor_critic.normalization import normalize
from shared.interfaces import Placement, Policy


def observe(params, observation: jax.Array, normalized: bool) -> jax.Array:
    """The network's input: the observation, normalized by the published statistics if asked."""
    x = observation.astype(jnp.float32)
    return normalize(params["obs_mean"], params["obs_var"], x) if normalized else x


def make_policy(network: Network, *, normalize_observations: bool, evaluation: bool) -> Policy:
    def init(key: jax.Array, placement: Placement) -> jax.Array:
        return key

    @jax.jit
    def step(params, key, observation, first):
        x = observe(params, observation, normalize_observations)
        distribution = network.distribution(network.apply(params["network"], x)[0])
        if evaluation:
            action = distribution.mode()
            if network.gaussian:
                return jnp.clip(action, network.low, network.high), {}, key
            return action.astype(jnp.int32), {}, key
        key, sample_key = jax.random.split(key)
        action = distribution.sample(seed=sample_key)  # (num_envs,) or (num_envs, action_dim)
        extras = {"log_prob": distribution.log_prob(action).astype(jnp.float32)}
        if network.gaussian:
            extras["raw_action"] = action.astype(jnp.float32)
            return jnp.clip(action, network.low, network.high), extras, key
        return action.astype(jnp.int32), extras, key

    return Policy(init=init, step=step)
