"""DQN (double, n-step, optionally prioritized) in pure JAX, with Acme's file layout."""

from shared.agents.dqn.actor import make_greedy_policy, make_policy
from shared.agents.dqn.config import DQNConfig
from shared.agents.dqn.learning import DQNLearner, TrainingState, make_learner
from shared.agents.dqn.losses import double_dqn_loss, importance_weights
from shared.agents.dqn.networks import QNetwork, init_params, make_network

__all__ = [
    "DQNConfig",
    "DQNLearner",
    "QNetwork",
    "TrainingState",
    "double_dqn_loss",
    "importance_weights",
    "init_params",
    "make_greedy_policy",
    "make_learner",
    "make_network",
    "make_policy",
]
