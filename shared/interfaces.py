"""The core abstractions of rlfleet, in one small module: read this first.

An actor process runs this loop for each of its (vectorized) environments::

    timestep = env.reset()
    adder.add_first(timestep)                    # via Actor.observe_first
    while True:
        action = actor.select_action(obs)        # batched, jitted policy
        timestep = env.step(action)
        actor.observe(action, next_timestep)     # the adder turns steps into replay items
        actor.update()                           # maybe pull newer params from the VariableSource

The learner samples replay, runs the agent's pure ``sgd_step`` and publishes parameters that
actors pull through a VariableSource. Everything that must survive a restart is Saveable.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np

Nest = Any  # a tree of dicts/lists whose leaves are arrays or scalars


@runtime_checkable
class VariableSource(Protocol):
    """Where actors get parameters: the learner, over HTTP or in process."""

    def get_variables(self) -> tuple[int, Nest]:
        """The latest ``(version, params)``."""
        ...


class Actor(Protocol):
    """Acts in a batch of environments and feeds what it sees to an adder."""

    def select_action(self, observation: np.ndarray) -> np.ndarray:
        """Actions for a batch of observations: (num_envs, ...) -> (num_envs,)."""
        ...

    def observe_first(self, observation: np.ndarray) -> None:
        """The first observations of new episodes."""
        ...

    def observe(
        self,
        action: np.ndarray,
        reward: np.ndarray,
        discount: np.ndarray,
        next_observation: np.ndarray,
    ) -> None:
        """One batched step of the environments."""
        ...

    def update(self, wait: bool = False) -> None:
        """Picks up newer parameters, if any (blocking only when ``wait``)."""
        ...


class Adder(Protocol):
    """Turns a stream of batched steps into replay items (n-step transitions, sequences, ...).

    Arrays have a leading (num_envs,) axis. When envs end an episode (gymnasium's ``terminated``:
    no bootstrap; ``truncated``: bootstrap from the final observation), ``add`` gets their final
    observations and ``add_first(reset_observations, envs=ended)`` starts their next episodes.
    """

    def add_first(self, observation: np.ndarray, *, envs: np.ndarray | None = None) -> None: ...

    def add(
        self,
        action: np.ndarray,
        reward: np.ndarray,
        next_observation: np.ndarray,
        *,
        terminated: np.ndarray,
        truncated: np.ndarray,
    ) -> None: ...

    def flush(self) -> None:
        """Hands over the items already formed (before shutting down)."""
        ...

    def reset(self) -> None: ...


class Learner(Protocol):
    """Consumes replay batches and improves parameters."""

    def step(self) -> dict[str, float]:
        """One (or more) update(s); returns metrics."""
        ...

    def get_variables(self) -> tuple[int, Nest]: ...


class Saveable(Protocol):
    """State that a checkpoint holds and a restart restores."""

    def save(self) -> Nest: ...

    def restore(self, state: Nest) -> None: ...
