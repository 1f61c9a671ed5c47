"""SAC (twin Q, automatic entropy tuning, tanh-squashed Gaussian) on the agent contract.

``Config`` and ``make_agent`` are what the services load (``AGENT=sac``); the rest is the
algorithm, in Acme's file layout: config, networks, actor (the policies), learning, losses.
What SAC shares with TD3 (action bounds, twin critic, replay and fleet knobs) is in
``shared/agents/continuous.py``.
"""

from __future__ import annotations

from shared.agents.continuous import box_spaces
from shared.agents.sac.actor import make_policy
from shared.agents.sac.config import SACConfig
from shared.agents.sac.learning import TrainingState, make_learner
from shared.agents.sac.losses import (
    alpha_loss,
    critic_loss,
    policy_loss,
    sample_action,
    soft_bellman_target,
    tanh_gaussian,
)
from shared.agents.sac.networks import GaussianPolicy, Networks, make_networks
from shared.interfaces import Agent, EnvSpec

Config = SACConfig


def make_agent(config: SACConfig, spec: EnvSpec) -> Agent:
    """SAC for ``spec``: flat Box observations, a bounded 1-d Box of actions."""
    obs_dim, bounds = box_spaces(spec, "sac")
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
    "GaussianPolicy",
    "Networks",
    "SACConfig",
    "TrainingState",
    "alpha_loss",
    "critic_loss",
    "make_agent",
    "make_learner",
    "make_networks",
    "make_policy",
    "policy_loss",
    "sample_action",
    "soft_bellman_target",
    "tanh_gaussian",
]
