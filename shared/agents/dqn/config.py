"""DQN hyper-parameters: one frozen dataclass and the replay table it needs.

The defaults are tuned for CartPole-v1 served by two actors (docs/benchmarks.md, docs/baselines.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

_AT_LEAST_ONE = (
    "n_step",
    "batch_size",
    "target_update_period",
    "max_replay_size",
    "min_replay_size",
    "batches_per_sample",
    "publish_every",
    "variable_update_period",
    "insert_batch_size",
    "num_envs",
)


@dataclass(frozen=True)
class DQNConfig:
    """Double DQN with n-step returns, optional prioritized replay and Ape-X epsilons."""

    # --- loss ---
    discount: float = 0.99
    """Per-step discount gamma; an n-step item carries gamma**m (0 at termination)."""
    n_step: int = 20
    """Steps summed into one replay item by the actors' adder."""
    huber_delta: float = 1.0
    """TD errors beyond this are penalised linearly (Huber loss)."""

    # --- optimiser and network ---
    batch_size: int = 128
    """Transitions per SGD step."""
    learning_rate: float = 5e-4
    """Adam step size (5e-4 against 1e-3, CartPole seeds 0-4 through the services: median 68k
    against 80k env steps to solve, worst 112k against 125k; docs/benchmarks.md)."""
    adam_eps: float = 1e-5
    """Adam epsilon (denominator offset)."""
    max_gradient_norm: float = 10.0
    """Gradients are clipped to this global norm before Adam."""
    hidden_sizes: tuple[int, ...] = (64, 64)
    """Widths of the Q-network's hidden ReLU layers."""
    target_update_period: int = 100
    """SGD steps between copies of the online params into the target (used when tau == 0)."""
    tau: float = 0.0
    """Polyak rate target <- tau * online + (1 - tau) * target each step; 0 = periodic copy."""

    # --- exploration (epsilon-greedy) ---
    epsilon_start: float = 1.0
    """Epsilon at an actor's first env step."""
    epsilon_end: float = 0.0
    """Epsilon after the linear decay (0 tuned best: decayed training episodes act greedily)."""
    epsilon_decay_steps: int = 10_000
    """Env steps of one actor (all its envs counted) over which epsilon decays linearly. 10k
    rather than 5k: in one process over seeds 0-19 the worst seed fell from 283.5k env steps to
    475 (4.3x the median) to 122.5k (1.7x) at about the same median (docs/benchmarks.md)."""
    ape_x_spread: bool = False
    """Instead of the schedule, actor i of N uses base ** (1 + alpha * i / (N - 1)) (Ape-X)."""
    ape_x_base: float = 0.4
    """Ape-X epsilon base."""
    ape_x_alpha: float = 7.0
    """Ape-X epsilon exponent spread."""
    evaluation_epsilon: float = 0.0
    """Epsilon of evaluator actors."""

    # --- replay ---
    table_name: str = "dqn_transitions"
    """Replay table holding the n-step transitions."""
    max_replay_size: int = 50_000
    """Items kept (FIFO removal beyond)."""
    min_replay_size: int = 1_000
    """Items inserted before the first sample."""
    samples_per_insert: float = 32.0
    """Items sampled per item inserted (= updates * batch_size / inserts); the replay ratio."""
    error_buffer: float = 20_000.0
    """Rate limiter slack, in sampled items, around inserts * samples_per_insert."""
    prioritized: bool = False
    """Prioritized sampling by |TD error| instead of uniform."""
    priority_exponent: float = 0.6
    """alpha in P(i) = p_i**alpha / sum_j p_j**alpha."""
    importance_sampling_exponent: float = 0.4
    """beta in the importance weights (N * P(i))**-beta / max_j (N * P(j))**-beta."""
    priority_eps: float = 1e-3
    """Added to |TD error| so that no item's priority is zero."""

    # --- services (the fleet knobs, checked with the table at start) ---
    batches_per_sample: int = 4
    """Batches per sample request, run as one scanned update (fewer round trips to replay); 8
    feeds the learner as well, but needed 108-183k env steps for 2 of 5 CartPole seeds."""
    publish_every: int = 10
    """Learner SGD steps between published parameter versions."""
    variable_update_period: int = 16
    """Policy calls of one actor between parameter pulls (one call acts in all its envs), as
    Acme's VariableClient counts them: a pull costs the same whatever num_envs is."""
    insert_batch_size: int = 1024
    """At most this many replay items per insert request of an actor."""
    insert_max_delay_ms: float = 10.0
    """No item waits longer than this in an actor before its insert request is sent, however
    few items it holds: fresh data matters more to learning than big requests (with 2 actors x
    4 envs, inserting every 256 items needed ~2x the env steps to solve CartPole than every 32)."""
    num_envs: int = 4
    """Vectorized environments per actor (the NUM_ENVS setting overrides it)."""

    def __post_init__(self) -> None:
        for name in _AT_LEAST_ONE:
            if getattr(self, name) < 1:
                raise ValueError(f"DQNConfig: {name} must be >= 1, got {getattr(self, name)}")
        epsilons = (self.epsilon_start, self.epsilon_end, self.evaluation_epsilon, self.ape_x_base)
        checks = {
            "discount must be in [0, 1]": 0.0 <= self.discount <= 1.0,
            "tau must be in [0, 1]": 0.0 <= self.tau <= 1.0,
            "hidden_sizes must be positive ints": all(
                isinstance(h, int) and h >= 1 for h in self.hidden_sizes
            ),
            "epsilons (and ape_x_base) must be in [0, 1]": all(0 <= e <= 1 for e in epsilons),
            "epsilon_decay_steps must be >= 0": self.epsilon_decay_steps >= 0,
            "samples_per_insert must be > 0": self.samples_per_insert > 0,
            "insert_max_delay_ms must be > 0": self.insert_max_delay_ms > 0,
            "min_replay_size must be <= max_replay_size": (
                self.min_replay_size <= self.max_replay_size
            ),
        }
        for message, ok in checks.items():
            if not ok:
                raise ValueError(f"DQNConfig: {message}")

    def replay_table_config(self, obs_dim: int) -> dict[str, Any]:
        """The body of ``PUT /tables/{table_name}`` (CONTRACT.md) for n-step transitions."""
        sampler: dict[str, Any] = {"kind": "uniform"}
        if self.prioritized:
            sampler = {"kind": "prioritized", "priority_exponent": self.priority_exponent}
        f32 = "<f4"
        return {
            "sampler": sampler,
            "remover": {"kind": "fifo"},
            "max_size": self.max_replay_size,
            "max_times_sampled": 0,
            "rate_limiter": {
                "kind": "sample_to_insert_ratio",
                "samples_per_insert": self.samples_per_insert,
                "min_size_to_sample": self.min_replay_size,
                "error_buffer": self.error_buffer,
            },
            "signature": {
                "observation": {"dtype": f32, "shape": [obs_dim]},
                "action": {"dtype": "<i4", "shape": []},
                "reward": {"dtype": f32, "shape": []},
                "discount": {"dtype": f32, "shape": []},
                "next_observation": {"dtype": f32, "shape": [obs_dim]},
            },
        }
