"""IMPALA's policies: sample from the categorical policy (training) or take its mode (evaluation).

The shared actor-critic policies (``shared/agents/actor_critic/actor.py``), without observation
normalization: the training policy's ``log_prob`` extra is the behaviour policy V-trace corrects.
"""

from __future__ import annotations

from shared.agents.actor_critic.actor import make_policy as _make_policy
from shared.agents.actor_critic.networks import Network
from shared.interfaces import Policy


def make_policy(network: Network, *, evaluation: bool = False) -> Policy:
    return _make_policy(network, normalize_observations=False, evaluation=evaluation)
