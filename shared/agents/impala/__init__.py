"""IMPALA (V-trace actor-critic, Espeholt et al. 2018) on the agent contract.

``Config`` and ``make_agent`` are what the services load (``AGENT=impala``); the rest is the
algorithm, in Acme's file layout: config, networks, actor (the policies), learning, losses. Actors
write unrolls with their behaviour log-probabilities and parameter versions into a queue table
(``shared/agents/actor_critic/sequences.py``); the learner consumes each once and corrects for the
actors' lag with V-trace.
"""

from __future__ import annotations

from shared.agents.actor_critic import sequences
from shared.agents.impala.actor import make_policy
from shared.agents.impala.config import IMPALAConfig
from shared.agents.impala.learning import TrainingState, make_learner
from shared.agents.impala.losses import impala_loss, vtrace_targets
from shared.agents.impala.networks import make_network
from shared.interfaces import Agent, EnvSpec

Config = IMPALAConfig


def make_agent(config: IMPALAConfig, spec: EnvSpec) -> Agent:
    """IMPALA for ``spec``: flat Box observations, Discrete actions."""
    network = make_network(config, spec)
    return sequences.unroll_agent(
        config,
        network,
        policy=make_policy(network),
        evaluation_policy=make_policy(network, evaluation=True),
        learner=make_learner(config, network),
    )


__all__ = [
    "Config",
    "IMPALAConfig",
    "TrainingState",
    "impala_loss",
    "make_agent",
    "make_learner",
    "make_network",
    "make_policy",
    "vtrace_targets",
]
