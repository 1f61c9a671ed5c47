"""PPO's policies: the shared actor-critic policies (``shared/agents/actor_critic/actor.py``).

Training samples (Box: the Gaussian's sample, clipped to the bounds for the environment) and
returns the behaviour log-probability PPO's ratio divides by; evaluation takes the mode (Box:
the mean, clipped). Both normalize observations by the published statistics when configured.
"""

from __future__ import annotations

from shared.agents.actor_critic.actor import make_policy as _make_policy
from shared.agents.actor_critic.networks import Network
from shared.agents.ppo.config import PPOConfig
from shared.interfaces import Policy


def make_policy(network: Network, config: PPOConfig, *, evaluation: bool = False) -> Policy:
    return _make_policy(
        network, normalize_observations=config.normalize_observations, evaluation=evaluation
    )
