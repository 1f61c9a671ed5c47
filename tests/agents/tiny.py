"""A deliberately tiny agent that lives outside shared/agents/: ``AGENT=tests.agents.tiny``.

One-step linear Q-learning with a softmax (Boltzmann) policy. It proves the contract: the
services load it by module path and train it with no line of theirs written for it, and it uses
what DQN does not (a policy extra stored with each item, the parameter version that acted, a
min-size table, no target network).
docs/agents.md walks through it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import gymnasium
import jax
import jax.numpy as jnp

from shared.adders import NStepTransitionAdder
from shared.interfaces import (
    Agent,
    Batch,
    EnvSpec,
    Fleet,
    Learner,
    Placement,
    Policy,
    UnsupportedEnvironment,
)


@dataclass(frozen=True)
class Config:
    learning_rate: float = 0.01
    """SGD step size on the squared TD error."""
    discount: float = 0.99
    temperature: float = 1.0
    """Softmax temperature of the acting policy."""
    batch_size: int = 32
    num_envs: int = 2


class State(NamedTuple):
    params: dict[str, jax.Array]  # {"w": (obs_dim, num_actions), "b": (num_actions,)}
    steps: jax.Array


def make_agent(config: Config, spec: EnvSpec) -> Agent:
    obs, actions = spec.observation_space, spec.action_space
    if not isinstance(actions, gymnasium.spaces.Discrete) or len(obs.shape) != 1:
        raise UnsupportedEnvironment(f"tiny needs flat observations and Discrete actions: {spec}")
    obs_dim, num_actions = obs.shape[0], int(actions.n)

    def q(params, observation):  # (batch, obs_dim) -> (batch, num_actions)
        return observation @ params["w"] + params["b"]

    def init_policy(key, placement: Placement):
        return key

    @jax.jit
    def act(params, key, observation, first):
        key, sample_key = jax.random.split(key)
        logits = q(params, observation) / config.temperature
        action = jax.random.categorical(sample_key, logits).astype(jnp.int32)  # (num_envs,)
        log_prob = jnp.take_along_axis(jax.nn.log_softmax(logits), action[:, None], 1)[:, 0]
        return action, {"log_prob": log_prob}, key

    @jax.jit
    def greedy(params, key, observation, first):
        return jnp.argmax(q(params, observation), -1).astype(jnp.int32), {}, key

    def init(key):
        w = 0.01 * jax.random.normal(key, (obs_dim, num_actions))
        return State({"w": w, "b": jnp.zeros(num_actions)}, jnp.int32(0))

    @jax.jit
    def update(state: State, batch: Batch):
        data = batch.data

        def loss(params):
            target = data["reward"] + data["discount"] * q(params, data["next_observation"]).max(-1)
            taken = jnp.take_along_axis(q(params, data["observation"]), data["action"][:, None], 1)
            return jnp.mean((jax.lax.stop_gradient(target) - taken[:, 0]) ** 2)

        value, grads = jax.value_and_grad(loss)(state.params)
        params = jax.tree.map(lambda p, g: p - config.learning_rate * g, state.params, grads)
        metrics = {"loss": value, "log_prob_mean": jnp.mean(data["log_prob"])}
        return State(params, state.steps + 1), metrics, None

    def make_adder(sinks, num_envs, batching):  # one-step transitions, with the policy's extra
        return NStepTransitionAdder(
            sinks["tiny"],
            num_envs=num_envs,
            n_step=1,
            discount=config.discount,
            **batching._asdict(),
        )

    f32 = {"dtype": "<f4", "shape": []}
    table = {
        "sampler": {"kind": "uniform"},
        "remover": {"kind": "fifo"},
        "max_size": 10_000,
        # actors may run ahead of the learner by 1,000 items at most, as a real agent's table does
        "rate_limiter": {
            "kind": "sample_to_insert_ratio",
            "samples_per_insert": 1.0,
            "min_size_to_sample": 100,
            "error_buffer": 1000.0,
        },
        "signature": {
            "observation": {"dtype": "<f4", "shape": [obs_dim]},
            "action": {"dtype": "<i4", "shape": []},
            "reward": f32,
            "discount": f32,
            "next_observation": {"dtype": "<f4", "shape": [obs_dim]},
            "log_prob": f32,
            "param_version": {"dtype": "<i4", "shape": []},  # asks actors for it: policy lag
        },
    }
    return Agent(
        tables={"tiny": table},
        fleet=Fleet(batch_size=config.batch_size, num_envs=config.num_envs, publish_every=5),
        make_adder=make_adder,
        policy=Policy(init=init_policy, step=act),
        evaluation_policy=Policy(init=init_policy, step=greedy),
        learner=Learner(table="tiny", init=jax.jit(init), update=update, params=lambda s: s.params),
    )
