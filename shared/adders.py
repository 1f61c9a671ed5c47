"""Adders: turn the batched steps of ``num_envs`` environments into replay items (as in Acme).

Agents pick one in ``make_agent`` (``shared.interfaces.Agent.make_adder``); every adder follows
the ``shared.interfaces.Adder`` protocol::

    adder.add_first(obs)                                  # (num_envs, ...) first observations
    adder.add(action, reward, next_obs, terminated=..., truncated=..., extras={...})
    adder.add_first(reset_obs, envs=terminated | truncated)  # new episodes of the envs that ended

``terminated`` (no bootstrap) and ``truncated`` (time limit: bootstrap) end an episode, as in
gymnasium; ``next_obs`` then holds the *final* observation of those envs. ``extras`` are the
policy's per-step outputs (log-probabilities, recurrent state): each is stored with the step it
belongs to, under its own name. Items are collected into insert requests of ``batch_size`` items
(columns with a leading batch axis) and handed to ``sink``; ``flush()`` hands over a partial
request. With ``max_delay_s``, no step waits longer than that (by ``clock``) before the items it
completed are handed over, however few; ``max_delay_s=0`` hands them over after every step.

- ``NStepTransitionAdder``: n-step transitions (the DQN item, docs/actor.md), fully vectorized.
- ``SequenceAdder``: fixed-length overlapping sequences of steps, within episodes (R2D2-style)
  or running across their ends (the IMPALA / PPO unroll).
- ``EpisodeAdder``: whole episodes, zero-padded to ``max_length`` steps.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Literal

import numpy as np

from shared.interfaces import Columns, Sink

Extras = Mapping[str, np.ndarray] | None


class _Linger:
    """Hands over what is formed once the oldest step since the last ``flush`` is due."""

    _max_delay_s: float | None
    _clock: Callable[[], float]
    _oldest: float | None

    def flush(self) -> None:
        raise NotImplementedError

    def _linger(self) -> None:
        if self._max_delay_s is None:
            return
        now = self._clock()
        if self._oldest is None:
            self._oldest = now
        if now - self._oldest >= self._max_delay_s:
            self.flush()


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


class NStepTransitionAdder(_Linger):
    """n-step transitions ``{observation, action, reward, discount, next_observation}``.

    For a transition from ``o_t`` that spans ``m <= n`` steps (m < n only at an episode's end)::

        reward   = sum_{k<m} gamma^k r_{t+k}
        discount = 0 if the episode terminated at step t + m - 1, else gamma^m
        next_observation = o_{t+m}

    A truncated episode (time limit) bootstraps from its final observation. When an episode ends,
    the up to n transitions still open in its window are all written.

    ``add`` only records the step (a few row copies: the acting loop's hot path). Every
    ``ceil(batch_size / num_envs)`` steps the transitions completed by the recorded steps are
    formed at once, vectorized over time and envs, and go to the batcher. With ``max_delay_s``,
    no step waits longer than that: the transitions it completed are formed and handed over in a
    request of whatever size, so the learner gets fresh data even from a slow actor (batching up
    to a size, lingering at most a time, as Kafka producers do). A transition from step t
    is complete at step ``c = min(t + n - 1, end of its episode)``; the n - 1 steps before a chunk
    stay in the history, since transitions starting there complete inside it. Extras are those
    of the transition's first step t (the policy's outputs where its action was chosen).
    """

    def __init__(
        self,
        sink: Sink,
        *,
        num_envs: int,
        n_step: int,
        discount: float,
        batch_size: int,
        max_delay_s: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if n_step < 1:
            raise ValueError(f"n_step must be >= 1, got {n_step}")
        self._batcher = ItemBatcher(sink, batch_size)
        self._max_delay_s = max_delay_s
        self._clock = clock
        self._oldest: float | None = None  # clock() at the first step since the last flush()
        self._num_envs = num_envs
        self._n = n_step
        self._chunk = -(-batch_size // num_envs)  # steps recorded between two formings
        self._capacity = n_step - 1 + self._chunk
        self._started = np.zeros(num_envs, bool)
        self._current: np.ndarray | None = None  # (num_envs, *obs_shape): o_t of the next step
        # History, time-major: rows [0, _kept) are earlier steps kept for open windows, rows
        # [_kept, _len) the steps recorded since the last forming.
        self._obs: np.ndarray | None = None  # (capacity, num_envs, *obs_shape)
        self._next_obs: np.ndarray | None = None  # the observation each step led to
        self._action: np.ndarray | None = None  # (capacity, num_envs, *action_shape)
        self._reward = np.zeros((self._capacity + n_step, num_envs), np.float64)  # 0-padded
        self._terminated = np.zeros((self._capacity, num_envs), bool)
        self._done = np.zeros((self._capacity, num_envs), bool)
        self._extras: dict[str, np.ndarray] = {}  # name -> (capacity, num_envs, ...), by step
        self._kept = 0
        self._len = 0
        self._k = np.arange(n_step)
        self._powers = discount ** np.arange(n_step + 1)  # gamma^0 .. gamma^n

    @property
    def pending(self) -> int:
        """Items not yet handed to the sink (formed, or still to form from recorded steps)."""
        return self._batcher.pending + (self._len - self._kept) * self._num_envs

    def add_first(self, observation: np.ndarray, *, envs: np.ndarray | None = None) -> None:
        observation = np.asarray(observation, np.float32)
        if self._current is None:
            shape = (self._num_envs, *observation.shape[1:])
            self._current = np.zeros(shape, np.float32)
            self._obs = np.zeros((self._capacity, *shape), np.float32)
            self._next_obs = np.zeros((self._capacity, *shape), np.float32)
        if envs is None:
            self._current[:] = observation
            self._started[:] = True
        else:
            mask = np.asarray(envs, bool)
            self._current[mask] = observation[mask]
            self._started |= mask

    def add(
        self,
        action: np.ndarray,
        reward: np.ndarray,
        next_observation: np.ndarray,
        *,
        terminated: np.ndarray,
        truncated: np.ndarray,
        extras: Extras = None,
    ) -> None:
        if not self._started.all():
            missing = np.flatnonzero(~self._started).tolist()
            raise RuntimeError(f"add() before add_first() for env(s) {missing}")
        i = self._len
        self._obs[i] = self._current
        self._next_obs[i] = next_observation
        if self._action is None:
            action = np.asarray(action)
            self._action = np.zeros((self._capacity, *action.shape), action.dtype)
        self._action[i] = action
        for name, value in (extras or {}).items():
            history = self._extras.get(name)
            if history is None:
                value = np.asarray(value)
                history = self._extras[name] = np.zeros((self._capacity, *value.shape), value.dtype)
            history[i] = value
        self._reward[i] = reward
        self._terminated[i] = terminated
        done = self._done[i]
        np.logical_or(terminated, truncated, out=done)
        self._started &= ~done
        self._current[:] = self._next_obs[i]
        self._len = i + 1
        if self._len == self._capacity:
            self._form()
        self._linger()

    def _form(self) -> None:
        """Forms the transitions completed in rows [_kept, _len); keeps the last n - 1 rows."""
        a, b, n = self._kept, self._len, self._n
        if b == a:
            return
        # Candidate starts t in [0, b): each ends at the first done step at or after it.
        rows = np.arange(b)[:, None]
        done_at = np.where(self._done[:b], rows, b + n)
        end = np.minimum.accumulate(done_at[::-1], axis=0)[::-1]  # (b, num_envs)
        complete = np.minimum(rows + n - 1, end)
        t, env = np.nonzero((complete >= a) & (complete < b))
        if len(t):
            c = complete[t, env]
            m = c - t + 1  # steps spanned, 1..n
            window = self._reward[t[:, None] + self._k, env[:, None]]  # (items, n), 0-padded
            returns = np.where(self._k < m[:, None], window, 0.0) @ self._powers[:n]
            discount = np.where(self._terminated[c, env], 0.0, self._powers[m])
            self._batcher.add(
                {
                    "observation": self._obs[t, env],
                    "action": self._action[t, env],
                    "reward": returns.astype(np.float32),
                    "discount": discount.astype(np.float32),
                    "next_observation": self._next_obs[c, env],
                    **{name: history[t, env] for name, history in self._extras.items()},
                }
            )
        keep = min(n - 1, b)
        histories = (self._obs, self._next_obs, self._action, self._terminated, self._done)
        for history in (*histories, *self._extras.values()):
            history[:keep] = history[b - keep : b]
        self._reward[:keep] = self._reward[b - keep : b]
        self._reward[keep:] = 0.0
        self._kept = self._len = keep

    def flush(self) -> None:
        """Hands over every transition completed so far; open windows need more steps and stay."""
        self._form()
        self._batcher.flush()
        self._oldest = None

    def reset(self) -> None:
        """Drops open windows and unsent items (e.g. after the environments were reset)."""
        self._started[:] = False
        self._kept = self._len = 0
        self._reward[:] = 0.0
        self._batcher.reset()


class _StepAdder(_Linger):
    """Per-env lists of steps ``{observation, action, reward, discount, start_of_episode}``.

    Step t holds o_t, the action taken there, the reward that followed, the discount (0 if the
    episode terminated there, else 1) and the policy's extras for it. An episode of T actions has
    T + 1 steps: the last holds the final observation (the bootstrap of a truncated episode) and
    zeros, but for ``param_version``, which stays that of the episode's last action. Step t is
    thus followed by its successor o_{t+1} in the same episode exactly when step t+1 exists,
    is no padding (``mask``) and starts no episode (``start_of_episode``).
    """

    def __init__(
        self,
        sink: Sink,
        *,
        num_envs: int,
        batch_size: int,
        max_delay_s: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._batcher = ItemBatcher(sink, batch_size)
        self._max_delay_s = max_delay_s
        self._clock = clock
        self._oldest: float | None = None
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
            self._begin_episode(b)

    def add(
        self,
        action: np.ndarray,
        reward: np.ndarray,
        next_observation: np.ndarray,
        *,
        terminated: np.ndarray,
        truncated: np.ndarray,
        extras: Extras = None,
    ) -> None:
        next_observation = np.asarray(next_observation, np.float32)
        action = np.asarray(action)
        extras = {name: np.asarray(value) for name, value in (extras or {}).items()}
        for b in range(self._num_envs):
            if self._current[b] is None:
                raise RuntimeError(f"add() before add_first() for env {b}")
            step = {
                "observation": self._current[b],
                "action": action[b].copy(),
                "reward": np.float32(reward[b]),
                "discount": np.float32(0.0 if terminated[b] else 1.0),
                "start_of_episode": np.bool_(self._first[b]),
                **{name: value[b].copy() for name, value in extras.items()},
            }
            self._append(b, step)
            self._first[b] = False
            self._current[b] = next_observation[b].copy()
            if terminated[b] or truncated[b]:
                final = {key: np.zeros_like(value) for key, value in step.items()}
                final.update(observation=self._current[b], start_of_episode=np.bool_(False))
                if "param_version" in step:  # no action here, but no lag of version 0 either
                    final["param_version"] = step["param_version"]
                self._append(b, final)
                self._end_episode(b)
                self._current[b] = None
        self._linger()

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
        self._oldest = None

    def reset(self) -> None:
        self._steps = [[] for _ in range(self._num_envs)]
        self._current = [None] * self._num_envs
        self._batcher.reset()

    def _begin_episode(self, b: int) -> None:
        self._steps[b] = []

    def _append(self, b: int, step: dict[str, np.ndarray]) -> None:
        raise NotImplementedError

    def _end_episode(self, b: int) -> None:
        raise NotImplementedError


class SequenceAdder(_StepAdder):
    """Sequences of ``sequence_length`` steps starting every ``period`` steps.

    Consecutive sequences overlap by ``sequence_length - period`` steps. What happens at the end
    of an episode (``end_of_episode``):

    - ``"pad"``: sequences stay within an episode; if no sequence holds the final step yet, the
      next one on the period grid is written, zero-padded (``mask`` marks the real steps);
    - ``"drop"``: sequences stay within an episode; only complete ones are written;
    - ``"continue"``: each env's steps are one stream across episodes, final steps included, and
      sequences are cut from it on the period grid whatever the episodes (no padding: ``mask``
      is all true). With ``period = sequence_length - 1`` every step is the first step of one
      transition in exactly one item and the last step of an item is the bootstrap of its last
      transition: the IMPALA / PPO unroll, with no compute spent on padding.

    Items: observation (L, *obs), action, reward, discount, start_of_episode, mask and the
    policy's extras, each (L, ...). Which steps are transitions: ``_StepAdder``.
    """

    def __init__(
        self,
        sink: Sink,
        *,
        num_envs: int,
        sequence_length: int,
        period: int,
        batch_size: int,
        end_of_episode: Literal["pad", "drop", "continue"] = "pad",
        max_delay_s: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if sequence_length < 1 or period < 1:
            raise ValueError("sequence_length and period must be >= 1")
        if end_of_episode not in ("pad", "drop", "continue"):
            raise ValueError(
                f"end_of_episode must be 'pad', 'drop' or 'continue', got {end_of_episode!r}"
            )
        super().__init__(
            sink, num_envs=num_envs, batch_size=batch_size, max_delay_s=max_delay_s, clock=clock
        )
        self._length = sequence_length
        self._period = period
        self._pad = end_of_episode == "pad"
        self._continue = end_of_episode == "continue"
        self._offset = [0] * num_envs  # stream index of self._steps[b][0]
        self._next_start = [0] * num_envs  # stream index where the next sequence starts
        self._covered = [0] * num_envs  # stream index after the last step written

    def _begin_episode(self, b: int) -> None:
        if self._continue:  # one stream across episodes: the new one just goes on
            return
        self._steps[b] = []
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
        if self._continue:
            return
        start = self._next_start[b] - self._offset[b]
        end = self._offset[b] + len(self._steps[b])  # episode steps, final step included
        if self._pad and start < len(self._steps[b]) and self._covered[b] < end:
            self._batcher.add(self._stack(self._steps[b][start:], self._length))
        self._steps[b] = []

    def reset(self) -> None:
        super().reset()
        self._offset = [0] * self._num_envs
        self._next_start = [0] * self._num_envs
        self._covered = [0] * self._num_envs


class EpisodeAdder(_StepAdder):
    """Whole episodes (all T + 1 steps), zero-padded to ``max_length`` steps with a ``mask``.

    An episode longer than ``max_length`` steps is an error: set max_length above the
    environment's time limit + 1.
    """

    def __init__(
        self,
        sink: Sink,
        *,
        num_envs: int,
        max_length: int,
        batch_size: int,
        max_delay_s: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_length < 2:
            raise ValueError(
                f"max_length must be >= 2 (one action and a final step), got {max_length}"
            )
        super().__init__(
            sink, num_envs=num_envs, batch_size=batch_size, max_delay_s=max_delay_s, clock=clock
        )
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
