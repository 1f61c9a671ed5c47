"""PPO (clipped surrogate, GAE; Schulman et al. 2017) on the agent contract, distributed.

``Config`` and ``make_agent`` are what the services load (``AGENT=ppo``); the rest is the
algorithm, in Acme's file layout: config, networks, actor (the policies), learning, losses. As
in Acme and Sample Factory, actors write unrolls with their behaviour log-probabilities and
parameter versions into a queue table (``shared/agents/actor_critic/sequences.py``); the learner
consumes each once, and the ratio pi / mu corrects for what changed since the actor acted.
"""

from __future__ import annotations

from shared.agents.actor_critic import sequences
from shared.agents.ppo.actor import make_policy
from shared.agents.ppo.config import PPOConfig
from shared.agents.ppo.learning import TrainingState, make_learner
from shared.agents.ppo.losses import Minibatch, gae, ppo_loss
from shared.agents.ppo.networks import make_network
from shared.interfaces import Agent, EnvSpec

Config = PPOConfig


def make_agent(config: PPOConfig, spec: EnvSpec) -> Agent:
    """PPO for ``spec``: flat Box observations; Discrete or 1-d Box actions."""
    network = make_network(config, spec)
    return sequences.unroll_agent(
        config,
        network,
        policy=make_policy(network, config),
        evaluation_policy=make_policy(network, config, evaluation=True),
        learner=make_learner(config, network),
    )


__all__ = [
    "Config",
    "Minibatch",
    "PPOConfig",
    "TrainingState",
    "gae",
    "make_agent",
    "make_learner",
    "make_network",
    "make_policy",
    "ppo_loss",
]
