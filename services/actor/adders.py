"""Adders: turn the batched steps of ``num_envs`` environments into replay items (as in Acme).

Every adder follows the ``shared.interfaces.Adder`` protocol::

    adder.add_first(obs)                                  # (num_envs, ...) first observations
    adder.add(action, reward, next_obs, terminated=..., truncated=...)
    adder.add_first(reset_obs, envs=terminated | truncated)  # new episodes of the envs that ended

``terminated`` (no bootstrap) and ``truncated`` (time limit: bootstrap) end an episode, as in
gymnasium; ``next_obs`` then holds the *final* observation of those envs.
Items are collected into insert requests of ``batch_size`` items (columns with a leading batch
axis) and handed to ``sink``; ``flush()`` hands over a partial request.

- ``NStepTransitionAdder``: the DQN item of the project (docs/actor.md), fully vectorized.
- ``SequenceAdder``: fixed-length overlapping sequences of steps (R2D2-style).
- ``EpisodeAdder``: whole episodes, zero-padded to ``max_length`` steps.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import numpy as np

Columns = dict[str, np.ndarray]  # field -> array with a leading item axis
Sink = Callable[[Columns], None]


class ItemBatcher:
    """Copies items into requests of ``batch_size`` and hands each full one to ``sink``."""

    def __init__(self, sink: Sink, batch_size: int) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self._sink = sink
        self._batch_size = batch_size
        self._buffer: Columns | None = None  # a fresh one per request: the sink keeps it
        self._count = 0

    @property
    def pending(self) -> int:
        """Items collected but not yet handed to the sink."""
        return self._count

    def add(self, columns: Columns) -> None:
        n = len(next(iter(columns.values())))
        offset = 0
        while offset < n:
            if self._buffer is None:
                self._buffer = {
                    k: np.empty((self._batch_size, *v.shape[1:]), v.dtype)
                    for k, v in columns.items()
                }
            take = min(n - offset, self._batch_size - self._count)
            for key, column in columns.items():
                self._buffer[key][self._count : self._count + take] = column[offset : offset + take]
            self._count += take
            offset += take
            if self._count == self._batch_size:
                self._emit()

    def flush(self) -> None:
        if self._count:
            self._emit()

    def reset(self) -> None:
        self._buffer, self._count = None, 0

    def _emit(self) -> None:
        request = {k: v[: self._count] for k, v in self._buffer.items()}
        self._buffer, self._count = None, 0
        self._sink(request)


class NStepTransitionAdder:
    """n-step transitions ``{observation, action, reward, discount, next_observation}``.

    For a transition from ``o_t`` that spans ``m <= n`` steps (m < n only at an episode's end)::

        reward   = sum_{k<m} gamma^k r_{t+k}
        discount = 0 if the episode terminated at step t + m - 1, else gamma^m
        next_observation = o_{t+m}

    A truncated episode (time limit) bootstraps from its final observation. When an episode ends,
    the up to n transitions still open in its window are all written.

    All envs step together, so the last n steps live in ring buffers shared by every env
    (slot = time % n); an env's window is the part of the ring since its episode started.
    """

    def __init__(
        self, sink: Sink, *, num_envs: int, n_step: int, discount: float, batch_size: int
    ) -> None:
        if n_step < 1:
            raise ValueError(f"n_step must be >= 1, got {n_step}")
        self._batcher = ItemBatcher(sink, batch_size)
        self._num_envs = num_envs
        self._n = n = n_step
        self._time = 0  # add() calls so far
        self._start = np.zeros(num_envs, np.int64)  # time of each env's first step in its episode
        self._started = np.zeros(num_envs, bool)
        self._obs: np.ndarray | None = None  # (n, num_envs, *obs_shape)
        self._current: np.ndarray | None = None  # (num_envs, *obs_shape)
        self._action = np.zeros((n, num_envs), np.int32)
        self._reward = np.zeros((n, num_envs), np.float32)
        k = self._k = np.arange(n)
        self._first = k == 0
        # order[s]: ring slots from oldest to newest when the newest step is in slot s.
        self._order = (k[None, :] + k[:, None] + 1) % n  # (n, n)
        # weights[s] @ reward: the n-step return of the oldest step when the newest is in slot s.
        powers = (discount**k).astype(np.float32)
        self._weights = np.zeros((n, n), np.float32)
        for s in range(n):
            self._weights[s, self._order[s]] = powers
        # upper[j, i] = gamma^(i - j) for i >= j: returns of every start of an ordered window.
        self._upper = np.triu(discount ** (k[None, :] - k[:, None]).clip(0)).astype(np.float32)
        self._tail_discounts = (discount ** (n - k)).astype(np.float32)  # gamma^m, m = n - k
        self._full_discounts = np.full(num_envs, discount**n, np.float32)
        self._full_discounts.flags.writeable = False

    @property
    def pending(self) -> int:
        return self._batcher.pending

    def add_first(self, observation: np.ndarray, *, envs: np.ndarray | None = None) -> None:
        observation = np.asarray(observation, np.float32)
        if self._obs is None:
            shape = observation.shape[1:]
            self._obs = np.zeros((self._n, self._num_envs, *shape), np.float32)
            self._current = np.zeros((self._num_envs, *shape), np.float32)
        mask = slice(None) if envs is None else np.asarray(envs, bool)
        self._current[mask] = observation[mask]
        self._start[mask] = self._time
        self._started[mask] = True

    def add(
        self,
        action: np.ndarray,
        reward: np.ndarray,
        next_observation: np.ndarray,
        *,
        terminated: np.ndarray,
        truncated: np.ndarray,
    ) -> None:
        if not self._started.all():
            missing = np.flatnonzero(~self._started).tolist()
            raise RuntimeError(f"add() before add_first() for env(s) {missing}")
        t, n = self._time, self._n
        slot = t % n
        self._obs[slot] = self._current
        self._action[slot] = action
        self._reward[slot] = reward
        self._time = t + 1
        next_observation = np.asarray(next_observation, np.float32)
        terminated = np.asarray(terminated, bool)
        done = terminated | np.asarray(truncated, bool)
        length = np.minimum(t + 1 - self._start, n)  # (num_envs,) steps in each window
        if not done.any() and (length == n).all():  # the common case: one item per env
            oldest = (slot + 1) % n
            self._batcher.add(
                {
                    "observation": self._obs[oldest],
                    "action": self._action[oldest],
                    "reward": self._weights[slot] @ self._reward,
                    "discount": self._full_discounts,
                    "next_observation": next_observation,
                }
            )
        else:
            self._emit(slot, next_observation, done, terminated, length)
            self._started[done] = False
        self._current[:] = next_observation

    def _emit(
        self,
        slot: int,
        next_observation: np.ndarray,
        done: np.ndarray,
        terminated: np.ndarray,
        length: np.ndarray,
    ) -> None:
        """The oldest transition of each full window, and every transition of ended ones.

        k is the position in a window ordered oldest first; an env's window is its last
        ``length`` positions.
        """
        order = self._order[slot]
        # Ended envs: every open position; the others: position 0, if their window is full.
        emit = (self._k >= self._n - length[:, None]) & (done[:, None] | self._first)
        env, k = np.nonzero(emit)  # (items,) each: grouped by env, oldest first
        if len(env) == 0:
            return
        returns = self._upper @ self._reward[order]  # (n, num_envs): returns from each k
        slots = order[k]
        self._batcher.add(
            {
                "observation": self._obs[slots, env],
                "action": self._action[slots, env],
                "reward": returns[k, env],
                "discount": np.where(terminated[env], np.float32(0.0), self._tail_discounts[k]),
                "next_observation": next_observation[env],
            }
        )

    def flush(self) -> None:
        """Hands over the items already formed; open windows need more steps and stay."""
        self._batcher.flush()

    def reset(self) -> None:
        """Drops open windows and unsent items (e.g. after the environments were reset)."""
        self._started[:] = False
        self._batcher.reset()


class _StepAdder:
    """Per-env lists of steps ``{observation, action, reward, discount, start_of_episode}``.

    Step t holds o_t, the action taken there, the reward that followed and the discount (0 if the
    episode terminated there, else 1). An
    episode of T actions has T + 1 steps: the last holds the final observation and zeros.
    """

    def __init__(self, sink: Sink, *, num_envs: int, batch_size: int) -> None:
        self._batcher = ItemBatcher(sink, batch_size)
        self._num_envs = num_envs
        self._steps: list[list[dict[str, np.ndarray]]] = [[] for _ in range(num_envs)]
        self._first: list[bool] = [False] * num_envs
        self._current: list[np.ndarray | None] = [None] * num_envs

    @property
    def pending(self) -> int:
        return self._batcher.pending

    def add_first(self, observation: np.ndarray, *, envs: np.ndarray | None = None) -> None:
        observation = np.asarray(observation, np.float32)
        for b in range(self._num_envs) if envs is None else np.flatnonzero(envs):
            self._current[b] = observation[b].copy()
            self._first[b] = True
            self._steps[b] = []
            self._begin_episode(b)

    def add(
        self,
        action: np.ndarray,
        reward: np.ndarray,
        next_observation: np.ndarray,
        *,
        terminated: np.ndarray,
        truncated: np.ndarray,
    ) -> None:
        next_observation = np.asarray(next_observation, np.float32)
        for b in range(self._num_envs):
            if self._current[b] is None:
                raise RuntimeError(f"add() before add_first() for env {b}")
            step = {
                "observation": self._current[b],
                "action": np.int32(action[b]),
                "reward": np.float32(reward[b]),
                "discount": np.float32(0.0 if terminated[b] else 1.0),
                "start_of_episode": np.bool_(self._first[b]),
            }
            self._append(b, step)
            self._first[b] = False
            self._current[b] = next_observation[b].copy()
            if terminated[b] or truncated[b]:
                final = {
                    "observation": self._current[b],
                    "action": np.int32(0),
                    "reward": np.float32(0.0),
                    "discount": np.float32(0.0),
                    "start_of_episode": np.bool_(False),
                }
                self._append(b, final)
                self._end_episode(b)
                self._current[b] = None

    def _stack(self, steps: list[dict[str, np.ndarray]], length: int) -> Columns:
        """One item: ``steps`` stacked and zero-padded to ``length``, with a validity mask."""
        pad = length - len(steps)
        item = {}
        for key in steps[0]:
            column = np.stack([s[key] for s in steps])
            if pad:
                column = np.concatenate([column, np.zeros((pad, *column.shape[1:]), column.dtype)])
            item[key] = column[None]
        item["mask"] = (np.arange(length) < len(steps))[None]
        return item

    def flush(self) -> None:
        self._batcher.flush()

    def reset(self) -> None:
        self._steps = [[] for _ in range(self._num_envs)]
        self._current = [None] * self._num_envs
        self._batcher.reset()

    def _begin_episode(self, b: int) -> None: ...

    def _append(self, b: int, step: dict[str, np.ndarray]) -> None:
        raise NotImplementedError

    def _end_episode(self, b: int) -> None:
        raise NotImplementedError


class SequenceAdder(_StepAdder):
    """Sequences of ``sequence_length`` steps starting every ``period`` steps of an episode.

    Consecutive sequences overlap by ``sequence_length - period`` steps. At the end of an episode,
    ``end_of_episode="pad"`` writes, if no sequence holds the final step yet, the next sequence on
    the period grid, zero-padded (``mask`` marks the real steps); ``"drop"`` writes only complete
    sequences. Items: observation (L, *obs), action, reward, discount, start_of_episode
    and mask, each (L,).
    """

    def __init__(
        self,
        sink: Sink,
        *,
        num_envs: int,
        sequence_length: int,
        period: int,
        batch_size: int,
        end_of_episode: Literal["pad", "drop"] = "pad",
    ) -> None:
        if sequence_length < 1 or period < 1:
            raise ValueError("sequence_length and period must be >= 1")
        if end_of_episode not in ("pad", "drop"):
            raise ValueError(f"end_of_episode must be 'pad' or 'drop', got {end_of_episode!r}")
        super().__init__(sink, num_envs=num_envs, batch_size=batch_size)
        self._length = sequence_length
        self._period = period
        self._pad = end_of_episode == "pad"
        self._offset = [0] * num_envs  # episode index of self._steps[b][0]
        self._next_start = [0] * num_envs  # episode index where the next sequence starts
        self._covered = [0] * num_envs  # episode index after the last step written

    def _begin_episode(self, b: int) -> None:
        self._offset[b] = self._next_start[b] = self._covered[b] = 0

    def _append(self, b: int, step: dict[str, np.ndarray]) -> None:
        steps = self._steps[b]
        steps.append(step)
        start = self._next_start[b] - self._offset[b]
        if start + self._length <= len(steps):
            self._batcher.add(self._stack(steps[start : start + self._length], self._length))
            self._covered[b] = self._next_start[b] + self._length
            self._next_start[b] += self._period
            drop = min(self._next_start[b] - self._offset[b], len(steps))
            del steps[:drop]
            self._offset[b] += drop

    def _end_episode(self, b: int) -> None:
        start = self._next_start[b] - self._offset[b]
        end = self._offset[b] + len(self._steps[b])  # episode steps, final step included
        if self._pad and start < len(self._steps[b]) and self._covered[b] < end:
            self._batcher.add(self._stack(self._steps[b][start:], self._length))
        self._steps[b] = []


class EpisodeAdder(_StepAdder):
    """Whole episodes (all T + 1 steps), zero-padded to ``max_length`` steps with a ``mask``.

    An episode longer than ``max_length`` steps is an error: set max_length above the
    environment's time limit + 1.
    """

    def __init__(self, sink: Sink, *, num_envs: int, max_length: int, batch_size: int) -> None:
        if max_length < 2:
            raise ValueError(
                f"max_length must be >= 2 (one action and a final step), got {max_length}"
            )
        super().__init__(sink, num_envs=num_envs, batch_size=batch_size)
        self._max_length = max_length

    def _append(self, b: int, step: dict[str, np.ndarray]) -> None:
        if len(self._steps[b]) >= self._max_length:
            raise ValueError(
                f"episode of env {b} is longer than max_length={self._max_length} steps;"
                " raise max_length above the environment's time limit + 1"
            )
        self._steps[b].append(step)

    def _end_episode(self, b: int) -> None:
        self._batcher.add(self._stack(self._steps[b], self._max_length))
        self._steps[b] = []
