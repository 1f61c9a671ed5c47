"""TD3 (twin critics, target policy smoothing, delayed policy updates) on the agent contract.

``Config`` and ``make_agent`` are what the services load (``AGENT=td3``); the rest is the
algorithm, in Acme's file layout: config, networks, actor (the policies), learning, losses.
What TD3 shares with SAC (action bounds, twin critic, replay and fleet knobs) is in
``shared/agents/continuous.py``.
"""

from __future__ import annotations

from shared.agents.continuous import box_spaces
from shared.agents.td3.actor import make_policy
from shared.agents.td3.config import TD3Config
from shared.agents.td3.learning import TrainingState, make_learner
from shared.agents.td3.losses import (
    clipped_double_q_target,
    critic_loss,
    policy_loss,
    smoothed_target_action,
)
from shared.agents.td3.networks import DeterministicPolicy, Networks, make_networks
from shared.interfaces import Agent, EnvSpec

Config = TD3Config


def make_agent(config: TD3Config, spec: EnvSpec) -> Agent:
    """TD3 for ``spec``: flat Box observations, a bounded 1-d Box of actions."""
    obs_dim, bounds = box_spaces(spec, "td3")
    action_dim = len(bounds.low)
    networks = make_networks(config, action_dim)
    return Agent(
        tables={config.table_name: config.replay_table_config(obs_dim, action_dim)},
        fleet=config.fleet(),
        make_adder=config.make_adder,
        policy=make_policy(networks.policy, config, bounds),
        evaluation_policy=make_policy(networks.policy, config, bounds, evaluation=True),
        learner=make_learner(config, networks, obs_dim, bounds),
    )


__all__ = [
    "Config",
    "DeterministicPolicy",
    "Networks",
    "TD3Config",
    "TrainingState",
    "clipped_double_q_target",
    "critic_loss",
    "make_agent",
    "make_learner",
    "make_networks",
    "make_policy",
    "policy_loss",
    "smoothed_target_action",
]
