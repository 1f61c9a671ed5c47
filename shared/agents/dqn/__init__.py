"""DQN (double, n-step, optionally prioritized, Ape-X epsilons) on the agent contract.

``Config`` and ``make_agent`` are what the services load (``AGENT=dqn``); the rest is the
algorithm, in Acme's file layout: config, networks, actor (the policies), learning, losses.
"""

from __future__ import annotations

import gymnasium

from shared.adders import NStepTransitionAdder
from shared.agents.dqn.actor import make_policy
from shared.agents.dqn.config import DQNConfig
from shared.agents.dqn.learning import TrainingState, make_learner
from shared.agents.dqn.losses import double_dqn_loss, importance_weights
from shared.agents.dqn.networks import QNetwork, init_params, make_network
from shared.interfaces import Agent, EnvSpec, Fleet, UnsupportedEnvironment

Config = DQNConfig


def make_agent(config: DQNConfig, spec: EnvSpec) -> Agent:
    """DQN for ``spec``: a flat Box of observations, a Discrete set of actions."""
    obs, actions = spec.observation_space, spec.action_space
    if not isinstance(actions, gymnasium.spaces.Discrete):
        raise UnsupportedEnvironment(
            f"dqn needs a Discrete action space; {spec.env_id} has {actions}"
        )
    if not isinstance(obs, gymnasium.spaces.Box) or len(obs.shape) != 1:
        raise UnsupportedEnvironment(
            f"dqn needs flat (1-d Box) observations; {spec.env_id} has {obs}"
        )
    obs_dim = int(obs.shape[0])
    network = make_network(config, int(actions.n))

    def make_adder(sinks, num_envs, batching):
        return NStepTransitionAdder(
            sinks[config.table_name],
            num_envs=num_envs,
            n_step=config.n_step,
            discount=config.discount,
            **batching._asdict(),
        )

    return Agent(
        tables={config.table_name: config.replay_table_config(obs_dim)},
        fleet=Fleet.of(config),
        make_adder=make_adder,
        policy=make_policy(network, config),
        evaluation_policy=make_policy(network, config, evaluation=True),
        learner=make_learner(config, network, obs_dim),
    )


__all__ = [
    "Config",
    "DQNConfig",
    "QNetwork",
    "TrainingState",
    "double_dqn_loss",
    "importance_weights",
    "init_params",
    "make_agent",
    "make_learner",
    "make_network",
    "make_policy",
]
