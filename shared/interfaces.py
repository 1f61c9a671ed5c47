"""The agent contract of rlfleet, in one small module: read this first.

An agent is a folder (``shared/agents/<name>/``) or any importable module that defines two names:

    Config                          a frozen dataclass of the agent's hyper-parameters
    make_agent(config, spec)        -> Agent: plain values and pure functions for one EnvSpec

The services, the in-process runner and ``rlfleet eval`` know no agent by name: they load the
module that ``AGENT`` names and use only what its ``Agent`` holds. An actor runs, for its
``num_envs`` vectorized environments::

    state = policy.init(key, placement)
    observation, first = env.reset(), [True] * num_envs
    adder.add_first(observation)
    while True:
        action, extras, state = policy.step(params, state, observation, first)    # jitted
        next_observation, reward, terminated, truncated = env.step(action)
        adder.add(action, reward, next_observation, terminated=..., truncated=..., extras=extras)
        adder.add_first(reset_observation, envs=terminated | truncated)            # new episodes
        params = variables.update(calls)        # every fleet.variable_update_period policy calls

and the learner::

    state = learner.init(key)
    while True:
        batch = replay.sample(learner.table, fleet.batch_size * fleet.batches_per_sample)
        state, metrics, priorities = learner.update(state, batch)                  # jitted
        every fleet.publish_every batches: publish learner.params(state)           # -> actors
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any, NamedTuple, Protocol

import gymnasium
import numpy as np

Nest = Any  # a tree of dicts/lists whose leaves are arrays or scalars
Params = Nest  # what the learner publishes and the policy reads
Columns = dict[str, np.ndarray]  # replay items as columns: field -> (items, ...) array
Sink = Callable[[Columns], None]  # takes one insert request's worth of items for one table


class UnsupportedEnvironment(ValueError):
    """``make_agent`` refuses an environment whose spaces it cannot handle; the message says why."""


class EnvSpec(NamedTuple):
    """The spaces of one environment, read once from gymnasium (single env, not vectorized)."""

    env_id: str
    observation_space: gymnasium.Space
    action_space: gymnasium.Space


class Placement(NamedTuple):
    """Where a policy acts: ``num_envs`` environments of actor ``actor_index`` of ``num_actors``,
    in a fleet that had taken ``fleet_steps`` env steps when the policy started (0 in a new run;
    more in a resumed run or for an actor restarted or added later, whose exploration schedule
    should carry on from its share, ``fleet_steps // num_actors``, rather than start again)."""

    num_envs: int
    actor_index: int = 0
    num_actors: int = 1
    fleet_steps: int = 0

    @property
    def steps_done(self) -> int:
        """This actor's share of the fleet's env steps so far."""
        return self.fleet_steps // max(self.num_actors, 1)


class Policy(NamedTuple):
    """A batched policy with its own state (rng, exploration schedule, recurrent state).

    ``step(params, state, observation, first) -> (action, extras, state)`` is pure and jitted:
    ``observation`` is (num_envs, *obs_shape), ``first`` (num_envs,) marks observations that start
    an episode, ``action`` is (num_envs, *action_shape) in the env's own action space, and
    ``extras`` a dict of (num_envs, ...) arrays the adder stores with the step (log-probabilities,
    recurrent state; ``{}`` when there are none).
    """

    init: Callable[[Any, Placement], Any]  # (key, placement) -> state
    step: Callable[[Params, Any, Any, Any], tuple[Any, dict[str, Any], Any]]


class Batch(NamedTuple):
    """One sample request's items: ``data`` leaves are (n, ...), n = batch_size * batches."""

    data: Nest
    probabilities: Any  # (n,) probability with which the sampler drew each item


class Learner(NamedTuple):
    """The learner's pure functions; the services own the loop, the state and the publishing.

    ``update(state, batch) -> (state, metrics, priorities)`` consumes one sample request of
    ``fleet.batch_size * k`` items (k batches: one scanned step each, or epochs over them) and
    returns new priorities (n,) for prioritized replay, else None. ``params(state)`` is what
    ``GET /params`` publishes: only the policy's part where the state holds more.
    """

    table: str  # the table the learner samples (priorities go back to it)
    init: Callable[[Any], Any]  # key -> training state (a pytree of arrays)
    update: Callable[[Any, Batch], tuple[Any, dict[str, Any], Any | None]]
    params: Callable[[Any], Params]


class Batching(NamedTuple):
    """How an adder groups items into insert requests (set by the home, not the agent)."""

    batch_size: int  # at most this many items per request
    max_delay_s: float | None  # no item waits longer than this for its request (None: no limit)
    clock: Callable[[], float]  # seconds; the in-process runner's clock makes runs reproducible


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
        extras: Mapping[str, np.ndarray] | None = None,
    ) -> None: ...

    def flush(self) -> None:
        """Hands over the items already formed (before shutting down)."""
        ...


@dataclass(frozen=True)
class Fleet:
    """What the services need from the agent to move its data; checked with its tables at start."""

    batch_size: int  # items per learner batch
    batches_per_sample: int = 1  # batches per sample request (one ``update`` call)
    publish_every: int = 1  # learner batches between two published parameter versions
    variable_update_period: int = 1  # policy calls of an actor between parameter pulls
    insert_batch_size: int = 256  # at most this many items per insert request of an actor
    insert_max_delay_s: float = 0.01  # no item waits longer than this in an actor
    num_envs: int = 1  # vectorized environments per actor (NUM_ENVS overrides it)

    @classmethod
    def of(cls, config: Any) -> Fleet:
        """The knobs of an agent config that names them as these fields do (the linger in ms,
        ``insert_max_delay_ms``; ``batches_per_sample`` 1 where the config has none)."""
        return cls(
            batch_size=config.batch_size,
            batches_per_sample=getattr(config, "batches_per_sample", 1),
            publish_every=config.publish_every,
            variable_update_period=config.variable_update_period,
            insert_batch_size=config.insert_batch_size,
            insert_max_delay_s=config.insert_max_delay_ms / 1000,
            num_envs=config.num_envs,
        )

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise ValueError(f"Fleet.{f.name} must be a positive number, got {value!r}")


@dataclass(frozen=True)
class Agent:
    """What ``make_agent(config, spec)`` returns: everything the homes need, nothing they build.

    ``make_adder(sinks, num_envs, batching)`` writes items through ``sinks[table]``, one sink
    per table of ``tables`` (the bodies of ``PUT /tables/{name}``, CONTRACT.md). Evaluators act
    with ``evaluation_policy`` (greedy, or the agent's evaluation epsilon) and write nothing.
    """

    tables: Mapping[str, dict[str, Any]]
    fleet: Fleet
    make_adder: Callable[[Mapping[str, Sink], int, Batching], Adder]
    policy: Policy
    evaluation_policy: Policy
    learner: Learner
