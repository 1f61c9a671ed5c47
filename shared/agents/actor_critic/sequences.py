"""The unroll as replay items: sequences in a queue table, and which of their steps are transitions.

Each actor env's steps form one stream across episodes (``SequenceAdder`` with
``end_of_episode="continue"``), cut into items of ``unroll_length + 1`` steps every
``unroll_length`` steps: the last step of an item is the first of the next, the bootstrap of its
last transition. An episode's end leaves its final observation in the stream as a step of its
own (no action, zeros), followed by the next episode's first step. So, for t < unroll_length:

    valid_t    = mask[t+1] and not start_of_episode[t+1]   # o_{t+1} follows o_t in one episode
    discount_t = gamma * discount[t] * valid_t              # 0 at termination: no bootstrap
    reward_t   = reward[t] * valid_t

A truncated episode's last transition is valid and bootstraps from the final observation (its
``discount`` step field is 1); the final step's own transition is not valid, and the losses give
it no weight and let no return flow through it (V-trace: importance weight 0; GAE: lambda 0).

The table is a ``queue``: the learner consumes every item exactly once, in order; actors wait
(back-pressure, 429 on timeout and retry) while it holds ``queue_size`` unconsumed items.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from shared.adders import SequenceAdder
from shared.agents.actor_critic.networks import Network
from shared.interfaces import Agent, Batching, Fleet, Learner, Policy, Sink


class Transitions(NamedTuple):
    """The unroll_length transitions of each item, (batch, T)."""

    valid: jax.Array  # bool
    discount: jax.Array  # f32: gamma, or 0 at termination and at steps that are no transition
    reward: jax.Array  # f32


def transitions(data: dict[str, jax.Array], gamma: float) -> Transitions:
    """The transitions of a batch of items (module docstring), each field (batch, L) -> (batch, T)."""
    valid = data["mask"][:, 1:] & ~data["start_of_episode"][:, 1:]
    weight = valid.astype(jnp.float32)
    discount = gamma * data["discount"][:, :-1] * weight
    return Transitions(valid, discount, data["reward"][:, :-1] * weight)


def item_signature(network: Network, unroll_length: int) -> dict[str, Any]:
    """The table's signature: one item is L = unroll_length + 1 steps."""
    length = unroll_length + 1
    f32 = {"dtype": "<f4", "shape": [length]}
    if network.gaussian:
        action_dim = int(network.low.shape[0])
        action = {"dtype": "<f4", "shape": [length, action_dim]}
    else:
        action = {"dtype": "<i4", "shape": [length]}
    signature = {
        "observation": {"dtype": "<f4", "shape": [length, *network.obs_shape]},
        "action": action,
        "reward": f32,
        "discount": f32,
        "start_of_episode": {"dtype": "|b1", "shape": [length]},
        "mask": {"dtype": "|b1", "shape": [length]},
        "log_prob": f32,  # the behaviour policy's, from the actor
        "param_version": {"dtype": "<i4", "shape": [length]},  # asks actors for it: policy lag
    }
    if network.gaussian:
        signature["raw_action"] = action  # the unclipped sample that log_prob belongs to
    return signature


def queue_table(signature: dict[str, Any], queue_size: int) -> dict[str, Any]:
    """The body of ``PUT /tables/{name}``: a queue, each item sampled once, oldest first."""
    return {
        "sampler": {"kind": "fifo"},
        "remover": {"kind": "fifo"},
        "max_size": queue_size,
        "max_times_sampled": 1,
        "rate_limiter": {"kind": "queue", "size": queue_size},
        "signature": signature,
    }


def make_adder(sink: Sink, num_envs: int, batching: Batching, unroll_length: int) -> SequenceAdder:
    return SequenceAdder(
        sink,
        num_envs=num_envs,
        sequence_length=unroll_length + 1,
        period=unroll_length,
        end_of_episode="continue",
        **batching._asdict(),
    )


def unroll_agent(
    config: Any, network: Network, *, policy: Policy, evaluation_policy: Policy, learner: Learner
) -> Agent:
    """An on-policy agent's ``Agent``: its queue table of unrolls, the adder that writes them and
    the fleet knobs, from a config with ``table_name``, ``unroll_length``, ``queue_size`` and
    ``Fleet``'s fields (IMPALA's and PPO's)."""
    signature = item_signature(network, config.unroll_length)

    def adder(sinks, num_envs, batching):
        return make_adder(sinks[config.table_name], num_envs, batching, config.unroll_length)

    return Agent(
        tables={config.table_name: queue_table(signature, config.queue_size)},
        fleet=Fleet.of(config),
        make_adder=adder,
        policy=policy,
        evaluation_policy=evaluation_policy,
        learner=learner,
    )
