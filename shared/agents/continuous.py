"""What the continuous-control agents (SAC, TD3) share: action bounds, config, twin critic.

Policies think in [-1, 1]^A (a tanh output); environments take actions in their own bounds
[low, high]^A. The conversion lives here and nowhere else::

    env_action    = low + (policy_action + 1) / 2 * (high - low)     # to_env
    policy_action = 2 * (env_action - low) / (high - low) - 1        # to_policy

Actors store env actions in replay (the contract: a policy returns actions in the env's space),
and learners map them back with ``to_policy`` before the critic sees them.

The twin critic is one flax module holding both Q networks stacked on a leading axis of 2
(``nn.vmap`` over the parameters): one matmul per layer computes both critics, instead of two
chains of small ones (bench/sac_update.py measures the difference).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import flax.linen as nn
import gymnasium
import jax
import jax.numpy as jnp
import numpy as np

from shared.adders import NStepTransitionAdder
from shared.interfaces import Batching, EnvSpec, Fleet, Placement, Sink, UnsupportedEnvironment


class ActionBounds(NamedTuple):
    """The env's action bounds, (A,) float32 each, finite."""

    low: np.ndarray
    high: np.ndarray

    def to_env(self, action: jax.Array) -> jax.Array:
        """[-1, 1] -> [low, high], elementwise; (..., A)."""
        return self.low + (action + 1.0) * (0.5 * (self.high - self.low))

    def to_policy(self, action: jax.Array) -> jax.Array:
        """[low, high] -> [-1, 1], elementwise; (..., A)."""
        return (action - self.low) * (2.0 / (self.high - self.low)) - 1.0


def box_spaces(spec: EnvSpec, agent: str) -> tuple[int, ActionBounds]:
    """(obs_dim, bounds) of a flat Box -> bounded 1-d Box environment, else the reason."""
    obs, actions = spec.observation_space, spec.action_space
    if not isinstance(actions, gymnasium.spaces.Box) or len(actions.shape) != 1:
        raise UnsupportedEnvironment(
            f"{agent} needs a 1-d Box action space; {spec.env_id} has {actions}"
        )
    if not (np.all(np.isfinite(actions.low)) and np.all(np.isfinite(actions.high))):
        raise UnsupportedEnvironment(
            f"{agent} needs finite action bounds to squash into; {spec.env_id} has {actions}"
        )
    if np.any(actions.high <= actions.low):
        raise UnsupportedEnvironment(f"{agent}: {spec.env_id} has an empty action range {actions}")
    if not isinstance(obs, gymnasium.spaces.Box) or len(obs.shape) != 1:
        raise UnsupportedEnvironment(
            f"{agent} needs flat (1-d Box) observations; {spec.env_id} has {obs}"
        )
    bounds = ActionBounds(np.asarray(actions.low, np.float32), np.asarray(actions.high, np.float32))
    return int(obs.shape[0]), bounds


def transition_signature(obs_dim: int, action_dim: int) -> dict[str, dict]:
    """The replay signature of a 1-step (or n-step) transition with a float action vector."""
    f32 = "<f4"
    return {
        "observation": {"dtype": f32, "shape": [obs_dim]},
        "action": {"dtype": f32, "shape": [action_dim]},
        "reward": {"dtype": f32, "shape": []},
        "discount": {"dtype": f32, "shape": []},
        "next_observation": {"dtype": f32, "shape": [obs_dim]},
    }


class Critic(nn.Module):
    """Q(s, a): a ReLU MLP on the concatenation; (batch, obs), (batch, A) -> (batch,)."""

    hidden_sizes: Sequence[int]

    @nn.compact
    def __call__(self, observation: jax.Array, action: jax.Array) -> jax.Array:
        x = jnp.concatenate([observation, action], axis=-1)  # (batch, obs_dim + A)
        for size in self.hidden_sizes:
            x = nn.relu(nn.Dense(size)(x))
        return nn.Dense(1)(x)[..., 0]  # (batch,)


class TwinCritic(nn.Module):
    """``num_critics`` independent critics evaluated as one: -> (num_critics, batch)."""

    hidden_sizes: Sequence[int]
    num_critics: int = 2

    @nn.compact
    def __call__(self, observation: jax.Array, action: jax.Array) -> jax.Array:
        critics = nn.vmap(
            Critic,
            variable_axes={"params": 0},  # each critic its own parameters: (2, ...) leaves
            split_rngs={"params": True},  # and its own initialization
            in_axes=None,  # the same inputs to both
            out_axes=0,
            axis_size=self.num_critics,
        )
        return critics(tuple(self.hidden_sizes), name="critics")(observation, action)


_AT_LEAST_ONE = (
    "n_step",
    "batch_size",
    "max_replay_size",
    "min_replay_size",
    "batches_per_sample",
    "publish_every",
    "variable_update_period",
    "insert_batch_size",
    "num_envs",
)


@dataclass(frozen=True)
class OffPolicyConfig:
    """The replay, exploration-start and fleet knobs SAC and TD3 share (each adds its losses').

    The defaults are tuned for Pendulum-v1 served by two actors (docs/baselines.md); the MuJoCo
    commands in docs/agents.md override ``min_replay_size`` and ``random_steps`` as cleanRL does.
    """

    # --- loss and networks ---
    discount: float = 0.99
    """Per-step discount gamma; an n-step item carries gamma**m (0 at termination)."""
    n_step: int = 1
    """Steps summed into one replay item by the actors' adder (1: the papers' agents)."""
    hidden_sizes: tuple[int, ...] = (64, 64)
    """Widths of the ReLU layers of the policy and of each critic (MuJoCo: the papers' 256, 256;
    Pendulum learns as fast with 64, 64 at a fraction of the update's cost)."""
    tau: float = 0.005
    """Polyak rate of the target networks: target <- tau * online + (1 - tau) * target."""
    batch_size: int = 256
    """Transitions per SGD step."""

    # --- replay ---
    table_name: str = "transitions"
    """Replay table holding the transitions."""
    max_replay_size: int = 1_000_000
    """Items kept (FIFO removal beyond)."""
    min_replay_size: int = 1_000
    """Items inserted before the first sample."""
    updates_per_step: float = 1.0
    """SGD steps per env step (the update-to-data ratio): samples_per_insert = this * batch_size,
    held by the replay's rate limiter whichever side runs ahead."""
    error_buffer_steps: float = 100.0
    """Rate limiter slack, in env steps (inserted items) the actors may run ahead of or behind
    the ratio; times samples_per_insert it is the table's error_buffer in sampled items."""
    random_steps: int = 1_000
    """Each actor's first env steps act uniformly at random (cleanRL's learning_starts)."""

    # --- services (the fleet knobs, checked with the table at start) ---
    batches_per_sample: int = 4
    """Batches per sample request, run as one scanned update (fewer round trips to replay)."""
    publish_every: int = 8
    """Learner SGD steps between published parameter versions."""
    variable_update_period: int = 8
    """Policy calls of one actor between parameter pulls."""
    insert_batch_size: int = 64
    """At most this many replay items per insert request of an actor."""
    insert_max_delay_ms: float = 10.0
    """No item waits longer than this in an actor before its insert request is sent."""
    num_envs: int = 1
    """Vectorized environments per actor (the NUM_ENVS setting overrides it)."""

    def __post_init__(self) -> None:
        name = type(self).__name__
        for field in _AT_LEAST_ONE:
            if getattr(self, field) < 1:
                raise ValueError(f"{name}: {field} must be >= 1, got {getattr(self, field)}")
        checks = {
            "discount must be in [0, 1]": 0.0 <= self.discount <= 1.0,
            "tau must be in (0, 1]": 0.0 < self.tau <= 1.0,
            "hidden_sizes must be positive ints": all(
                isinstance(h, int) and h >= 1 for h in self.hidden_sizes
            ),
            "updates_per_step must be > 0": self.updates_per_step > 0,
            "error_buffer_steps must be > 0": self.error_buffer_steps > 0,
            "random_steps must be >= 0": self.random_steps >= 0,
            "insert_max_delay_ms must be > 0": self.insert_max_delay_ms > 0,
            "min_replay_size must be <= max_replay_size": (
                self.min_replay_size <= self.max_replay_size
            ),
        }
        for message, ok in checks.items():
            if not ok:
                raise ValueError(f"{name}: {message}")

    @property
    def samples_per_insert(self) -> float:
        return self.updates_per_step * self.batch_size

    def replay_table_config(self, obs_dim: int, action_dim: int) -> dict[str, Any]:
        """The body of ``PUT /tables/{table_name}`` (CONTRACT.md): uniform, FIFO, rate-limited."""
        return {
            "sampler": {"kind": "uniform"},
            "remover": {"kind": "fifo"},
            "max_size": self.max_replay_size,
            "max_times_sampled": 0,
            "rate_limiter": {
                "kind": "sample_to_insert_ratio",
                "samples_per_insert": self.samples_per_insert,
                "min_size_to_sample": self.min_replay_size,
                "error_buffer": self.error_buffer_steps * self.samples_per_insert,
            },
            "signature": transition_signature(obs_dim, action_dim),
        }

    def fleet(self) -> Fleet:
        return Fleet.of(self)

    def make_adder(self, sinks: Mapping[str, Sink], num_envs: int, batching: Batching):
        return NStepTransitionAdder(
            sinks[self.table_name],
            num_envs=num_envs,
            n_step=self.n_step,
            discount=self.discount,
            **batching._asdict(),
        )


class ExplorationState(NamedTuple):
    """An actor policy's state: its rng and its env steps so far (saturating at random_steps)."""

    key: jax.Array
    steps: jax.Array  # int32


def random_start(config: OffPolicyConfig):
    """``(init, explore)``: the policy state, and a function that replaces the first
    ``random_steps`` env steps' actions (in [-1, 1]) with uniform ones, in the jitted step."""

    def init(key: jax.Array, placement: Placement) -> ExplorationState:
        steps = min(placement.steps_done, max(config.random_steps, 1))  # resumed: no new warm-up
        return ExplorationState(jnp.asarray(key), jnp.int32(steps))

    def explore(state: ExplorationState, key: jax.Array, action: jax.Array):
        uniform = jax.random.uniform(key, action.shape, minval=-1.0, maxval=1.0)
        action = jnp.where(state.steps < config.random_steps, uniform, action)
        steps = jnp.minimum(state.steps + action.shape[0], max(config.random_steps, 1))
        return action, steps.astype(jnp.int32)

    return init, explore
