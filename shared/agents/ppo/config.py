"""PPO hyper-parameters: one frozen dataclass.

The defaults are tuned for CartPole-v1 served by two actors (docs/agents.md, docs/baselines.md);
cleanRL's ``ppo.py`` is the starting point (its names are kept where they exist).
"""

from __future__ import annotations

from dataclasses import dataclass

_AT_LEAST_ONE = (
    "unroll_length",
    "batch_size",
    "queue_size",
    "update_epochs",
    "num_minibatches",
    "publish_every",
    "variable_update_period",
    "insert_batch_size",
    "num_envs",
)


@dataclass(frozen=True)
class PPOConfig:
    """Clipped-surrogate PPO with GAE, several epochs of minibatches per batch of unrolls."""

    # --- loss ---
    discount: float = 0.99
    """Per-step discount gamma (0 at termination)."""
    gae_lambda: float = 0.95
    """lambda of the generalized advantage estimate."""
    clip_epsilon: float = 0.2
    """Probability ratios are clipped to [1 - eps, 1 + eps] in the surrogate objective."""
    clip_value: bool = True
    """Clip the value's change to clip_epsilon around its value before the update (cleanRL)."""
    value_cost: float = 0.5
    """Weight of the value loss."""
    entropy_cost: float = 0.01
    """Weight of the entropy bonus."""
    reward_scale: float = 1.0
    """Rewards are multiplied by this in the learner: a fixed stand-in for cleanRL's running
    return normalization, for tasks whose returns run to the thousands (MuJoCo)."""
    normalize_advantages: bool = True
    """Advantages are normalized per minibatch (mean 0, std 1)."""
    normalize_observations: bool = False
    """Observations are normalized by a running mean and variance kept by the learner and
    published with the parameters (actors normalize with the same statistics)."""

    # --- optimiser and network ---
    learning_rate: float = 1e-3
    """Adam step size at the start (CartPole seed 0 in one process, unrolls of 16: 81k env steps
    to 475; cleanRL's 2.5e-4 with unrolls of 32: not reached at 197k; 1e-3 with unrolls of 32:
    125k; 2e-3: 88k)."""
    learning_rate_decay_steps: int = 500_000
    """Env steps consumed by the learner over which the step size decays linearly to 0, as
    cleanRL anneals it over its 500k steps (after them it stays 0); 0: constant."""
    adam_eps: float = 1e-5
    max_gradient_norm: float = 0.5
    """Gradients are clipped to this global norm before Adam."""
    hidden_sizes: tuple[int, ...] = (64, 64)
    """Widths of the policy's and the value's tanh hidden layers (two separate MLPs)."""
    update_epochs: int = 4
    """Passes over each batch of unrolls."""
    num_minibatches: int = 4
    """Minibatches per pass (of the batch's batch_size * unroll_length transitions)."""

    # --- unrolls and the queue ---
    unroll_length: int = 16
    """Transitions per replay item (an item holds unroll_length + 1 steps)."""
    batch_size: int = 16
    """Items (unrolls) per learner update."""
    queue_size: int = 32
    """Items the queue table holds; actors wait (back-pressure) while it is full. Small: the
    learner's sampler prefetches 3 batches besides, and every queued unroll adds to the lag."""

    # --- services (the fleet knobs, checked with the table at start) ---
    publish_every: int = 1
    """Learner updates between published parameter versions."""
    variable_update_period: int = 4
    """Policy calls of one actor between parameter pulls."""
    insert_batch_size: int = 8
    """At most this many items per insert request of an actor."""
    insert_max_delay_ms: float = 10.0
    """No item waits longer than this in an actor before its insert request is sent."""
    num_envs: int = 8
    """Vectorized environments per actor (the NUM_ENVS setting overrides it)."""

    table_name: str = "ppo_unrolls"
    """The queue table of unrolls."""

    def __post_init__(self) -> None:
        for name in _AT_LEAST_ONE:
            if getattr(self, name) < 1:
                raise ValueError(f"PPOConfig: {name} must be >= 1, got {getattr(self, name)}")
        checks = {
            "discount and gae_lambda must be in [0, 1]": 0 <= self.discount <= 1
            and 0 <= self.gae_lambda <= 1,
            "clip_epsilon must be > 0": self.clip_epsilon > 0,
            "reward_scale must be > 0": self.reward_scale > 0,
            "learning_rate must be > 0": self.learning_rate > 0,
            "learning_rate_decay_steps must be >= 0": self.learning_rate_decay_steps >= 0,
            "hidden_sizes must be positive ints": all(
                isinstance(h, int) and h >= 1 for h in self.hidden_sizes
            ),
            "num_minibatches must divide batch_size * unroll_length": (
                self.batch_size * self.unroll_length % self.num_minibatches == 0
            ),
            "insert_max_delay_ms must be > 0": self.insert_max_delay_ms > 0,
        }
        for message, ok in checks.items():
            if not ok:
                raise ValueError(f"PPOConfig: {message}")
