"""TD3 hyper-parameters: the shared off-policy knobs (``OffPolicyConfig``) and TD3's own.

The defaults are tuned for Pendulum-v1 served by two actors (docs/baselines.md); the noise scales,
delay and learning rate are the paper's and cleanRL's ``td3_continuous_action_jax.py``.
"""

from __future__ import annotations

from dataclasses import dataclass

from shared.agents.continuous import OffPolicyConfig


@dataclass(frozen=True)
class TD3Config(OffPolicyConfig):
    """Twin delayed DDPG (Fujimoto et al. 2018)."""

    table_name: str = "td3_transitions"
    """Replay table holding the transitions."""
    policy_learning_rate: float = 3e-4
    """Adam step size of the deterministic policy."""
    critic_learning_rate: float = 3e-4
    """Adam step size of the twin critic."""
    policy_delay: int = 2
    """Critic steps per policy (and target networks) step: the "delayed" of TD3."""
    policy_noise: float = 0.2
    """Std of the Gaussian noise on the target policy's action (target policy smoothing), in
    the policy's [-1, 1] units."""
    noise_clip: float = 0.5
    """The smoothing noise is clipped to [-noise_clip, noise_clip]."""
    exploration_noise: float = 0.1
    """Std of the Gaussian noise the actors add to the policy's action, in [-1, 1] units."""

    def __post_init__(self) -> None:
        super().__post_init__()
        checks = {
            "learning rates must be > 0": min(self.policy_learning_rate, self.critic_learning_rate)
            > 0,
            "policy_delay must be >= 1": self.policy_delay >= 1,
            "noise scales must be >= 0": min(
                self.policy_noise, self.noise_clip, self.exploration_noise
            )
            >= 0,
        }
        for message, ok in checks.items():
            if not ok:
                raise ValueError(f"TD3Config: {message}")
