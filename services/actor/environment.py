"""Gymnasium vector environments in SAME_STEP autoreset mode.

In gymnasium 1.x's SAME_STEP mode, an env that ends an episode in ``step`` is reset in that same
call: ``step`` returns the *reset* observation for it and puts the final one in
``info["final_obs"]``. ``step`` below returns both, so the adder gets the final observations and
the reset ones start the next episodes.
"""

from __future__ import annotations

from typing import NamedTuple

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode

from shared.interfaces import EnvSpec


class VectorStep(NamedTuple):
    observation: np.ndarray  # (num_envs, *obs_shape): what to act on next (reset obs if ended)
    final_observation: np.ndarray  # (num_envs, *obs_shape): the obs the step led to
    reward: np.ndarray  # (num_envs,)
    terminated: np.ndarray  # (num_envs,) bool
    truncated: np.ndarray  # (num_envs,) bool
    done: np.ndarray  # (num_envs,) bool: terminated | truncated


def make_vector_env(env_id: str, num_envs: int) -> gym.vector.VectorEnv:
    """``num_envs`` copies of ``env_id`` stepped in this thread (the agent judges the spaces)."""
    return gym.make_vec(
        env_id,
        num_envs=num_envs,
        vectorization_mode="sync",
        vector_kwargs={"autoreset_mode": AutoresetMode.SAME_STEP},
    )


def spec_of(env_id: str, env: gym.vector.VectorEnv) -> EnvSpec:
    """The spec of one of ``env``'s environments."""
    return EnvSpec(env_id, env.single_observation_space, env.single_action_space)


def step(env: gym.vector.VectorEnv, actions: np.ndarray) -> VectorStep:
    observation, reward, terminated, truncated, info = env.step(actions)
    final = observation
    done = terminated | truncated
    if done.any():
        final = observation.copy()
        for b in np.flatnonzero(done):
            final[b] = info["final_obs"][b]
    return VectorStep(observation, final, reward, terminated, truncated, done)
