"""IMPALA hyper-parameters: one frozen dataclass.

The defaults are tuned for CartPole-v1 served by two actors (docs/agents.md, docs/baselines.md).
"""

from __future__ import annotations

from dataclasses import dataclass

_AT_LEAST_ONE = (
    "unroll_length",
    "batch_size",
    "queue_size",
    "publish_every",
    "variable_update_period",
    "insert_batch_size",
    "num_envs",
)


@dataclass(frozen=True)
class IMPALAConfig:
    """Actor-critic with V-trace targets and policy-gradient advantages (Espeholt et al. 2018)."""

    # --- loss ---
    discount: float = 0.99
    """Per-step discount gamma (0 at termination)."""
    clip_rho_threshold: float = 1.0
    """rho-bar: importance weights in the V-trace targets are clipped to this."""
    clip_pg_rho_threshold: float = 1.0
    """Importance weights of the policy-gradient advantages are clipped to this."""
    vtrace_lambda: float = 1.0
    """lambda of V-trace's traces c = lambda * min(1, rho) (1: the paper's V-trace)."""
    baseline_cost: float = 0.5
    """Weight of the value loss 0.5 * (v_s - V(x_s))**2."""
    entropy_cost: float = 0.01
    """Weight of the entropy bonus."""

    # --- optimiser and network ---
    learning_rate: float = 2e-3
    """Adam step size (CartPole seed 0 in one process: 100k env steps to 475 with batches of 8
    and max_gradient_norm 1; 1e-3 took 253k; 3e-3 with a norm of 40 solved in one process but
    through the services its policy collapsed to entropy 0 after one large step)."""
    learning_rate_decay_steps: int = 0
    """Env steps consumed by the learner over which the step size decays linearly to 0 (the
    IMPALA paper anneals it so); 0: constant."""
    adam_eps: float = 1e-5
    max_gradient_norm: float = 1.0
    """Gradients are clipped to this global norm before Adam."""
    hidden_sizes: tuple[int, ...] = (64, 64)
    """Widths of the policy's and the value's tanh hidden layers (two separate MLPs)."""

    # --- unrolls and the queue ---
    unroll_length: int = 20
    """Transitions per replay item (an item holds unroll_length + 1 steps)."""
    batch_size: int = 8
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

    table_name: str = "impala_unrolls"
    """The queue table of unrolls."""

    def __post_init__(self) -> None:
        for name in _AT_LEAST_ONE:
            if getattr(self, name) < 1:
                raise ValueError(f"IMPALAConfig: {name} must be >= 1, got {getattr(self, name)}")
        checks = {
            "discount must be in [0, 1]": 0.0 <= self.discount <= 1.0,
            "vtrace_lambda must be in [0, 1]": 0.0 <= self.vtrace_lambda <= 1.0,
            "clip thresholds must be > 0": min(self.clip_rho_threshold, self.clip_pg_rho_threshold)
            > 0,
            "learning_rate must be > 0": self.learning_rate > 0,
            "learning_rate_decay_steps must be >= 0": self.learning_rate_decay_steps >= 0,
            "hidden_sizes must be positive ints": all(
                isinstance(h, int) and h >= 1 for h in self.hidden_sizes
            ),
            "insert_max_delay_ms must be > 0": self.insert_max_delay_ms > 0,
        }
        for message, ok in checks.items():
            if not ok:
                raise ValueError(f"IMPALAConfig: {message}")
