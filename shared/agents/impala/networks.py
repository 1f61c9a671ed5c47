"""IMPALA's network: the shared actor-critic (``shared/agents/actor_critic/networks.py``)."""

from __future__ import annotations

from shared.agents.actor_critic.networks import Network
from shared.agents.actor_critic.networks import make_network as _make_network
from shared.agents.impala.config import IMPALAConfig
from shared.interfaces import EnvSpec


def make_network(config: IMPALAConfig, spec: EnvSpec) -> Network:
    """Separate policy and value MLPs; a categorical policy (IMPALA here takes Discrete actions)."""
    return _make_network(spec, config.hidden_sizes, allow_box=False, agent="impala")
