"""PPO's network: the shared actor-critic (``shared/agents/actor_critic/networks.py``)."""

from __future__ import annotations

from shared.agents.actor_critic.networks import Network
from shared.agents.actor_critic.networks import make_network as _make_network
from shared.agents.ppo.config import PPOConfig
from shared.interfaces import EnvSpec


def make_network(config: PPOConfig, spec: EnvSpec) -> Network:
    """Separate policy and value MLPs; categorical (Discrete) or Gaussian (Box) policy."""
    return _make_network(spec, config.hidden_sizes, allow_box=True, agent="ppo")
