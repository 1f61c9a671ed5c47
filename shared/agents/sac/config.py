"""SAC hyper-parameters: the shared off-policy knobs (``OffPolicyConfig``) and SAC's own.

The defaults are tuned for Pendulum-v1 served by two actors (docs/baselines.md); the learning
rates and entropy tuning are cleanRL's ``sac_continuous_action.py``.
"""

from __future__ import annotations

from dataclasses import dataclass

from shared.agents.continuous import OffPolicyConfig


@dataclass(frozen=True)
class SACConfig(OffPolicyConfig):
    """Soft actor-critic with twin Q networks and automatic entropy tuning (Haarnoja et al. 2018)."""

    table_name: str = "sac_transitions"
    """Replay table holding the transitions."""
    policy_learning_rate: float = 3e-4
    """Adam step size of the policy."""
    critic_learning_rate: float = 1e-3
    """Adam step size of the twin critic."""
    alpha_learning_rate: float = 1e-3
    """Adam step size of log(alpha), the entropy temperature (when ``autotune``)."""
    autotune: bool = True
    """Tune alpha so that the policy's entropy tracks target_entropy; else alpha is fixed."""
    init_alpha: float = 1.0
    """alpha at the start (the fixed alpha when not ``autotune``)."""
    target_entropy_scale: float = 1.0
    """target entropy = -target_entropy_scale * |A| (the paper's heuristic: -|A|)."""
    log_std_min: float = -5.0
    """The policy's log standard deviation is squashed into [log_std_min, log_std_max]."""
    log_std_max: float = 2.0
    """Upper bound of the policy's log standard deviation."""

    def __post_init__(self) -> None:
        super().__post_init__()
        checks = {
            "learning rates must be > 0": min(
                self.policy_learning_rate, self.critic_learning_rate, self.alpha_learning_rate
            )
            > 0,
            "init_alpha must be > 0": self.init_alpha > 0,
            "log_std_min must be < log_std_max": self.log_std_min < self.log_std_max,
        }
        for message, ok in checks.items():
            if not ok:
                raise ValueError(f"SACConfig: {message}")
