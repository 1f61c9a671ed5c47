"""Index structures over a table's slots, all numpy, all vectorized over a batch of slots.

- ``OrderRing``: the occupied slots in insertion order (a ring buffer with lazy deletion). Serves
  the fifo and lifo selectors (ends of the ring) and the uniform one (rejection sampling over the
  ring, kept at least a quarter full by compaction).
- ``SumTree``: ``p ** a`` per slot in a binary sum tree; O(log n) per update and per draw, a batch
  descends the tree in one vectorized pass per level.
- ``BestTree``: a tournament tree whose nodes hold the best slot of their subtree (highest or
  lowest priority, ties to the oldest key): the max_heap and min_heap selectors.

Each structure has ``add(slots)``, ``remove(slots)`` (idempotent), ``update(slots)`` (priorities
changed), ``grow(capacity)`` and ``clear()``. Slots passed in are unique.
"""

from __future__ import annotations

import math
import mmap

import numpy as np

from shared.errors import InsufficientStorage

_I32 = np.int32
_MMAP_BYTES = 1 << 16


def zeros(shape: int | tuple[int, ...], dtype: np.typing.DTypeLike = np.float64) -> np.ndarray:
    """A zero-filled array; from 64 KiB up in its own anonymous mapping, so that the memory goes
    back to the OS when the array is dropped (a table's arrays grow by doubling; freed malloc
    blocks of that size would stay in the process) and pages never written cost nothing."""
    shape = (shape,) if isinstance(shape, int) else shape
    dtype = np.dtype(dtype)
    nbytes = math.prod(shape) * dtype.itemsize
    try:
        if nbytes < _MMAP_BYTES:
            return np.zeros(shape, dtype)
        return np.frombuffer(mmap.mmap(-1, nbytes), dtype).reshape(shape)
    except (MemoryError, OSError, OverflowError) as e:
        raise InsufficientStorage(
            f"the replay cannot allocate {nbytes} bytes for a table ({e}): use smaller items or a"
            " smaller max_size"
        ) from e


class OrderRing:
    """Occupied slots in insertion order: ``buf[(head + j) % cap]`` for ``j < length``.

    An entry at ring index ``i`` is live iff ``pos[buf[i]] == i``; removal only clears ``pos``.
    While no entry is dead (the usual fifo table), sampling and eviction skip the liveness checks.

    Dense mode: until the first removal other than an eviction at an end of the ring, the live
    slots are exactly ``(head + j) % max_size`` for ``j < length`` (the table takes its slots from
    ``next_slots``), so neither ``buf`` nor ``pos`` exists: 8 bytes less per item and no
    indirection. ``materialize`` builds them when that stops being true.
    """

    def __init__(self, slot_capacity: int, max_size: int) -> None:
        self.max_size = max_size
        self.slot_capacity = slot_capacity
        self.clear()

    def clear(self) -> None:
        self.dense = True
        self.buf = self.pos = np.empty(0, _I32)
        self.head = 0
        self.length = 0  # entries in the ring, live or not
        self.live = 0

    def grow(self, slot_capacity: int) -> None:
        self.slot_capacity = slot_capacity
        if not self.dense:
            pos = zeros(slot_capacity, _I32)
            pos[: len(self.pos)] = self.pos
            self.pos = pos

    def next_slots(self, n: int) -> np.ndarray:
        """Dense mode: the slots the next ``n`` items take."""
        return (
            np.arange(self.head + self.length, self.head + self.length + n) % self.max_size
        ).astype(_I32)

    def at_an_end(self, slots: np.ndarray) -> bool:
        """Dense mode: are ``slots`` the k oldest (in order) or the k newest (newest first)?"""
        k = len(slots)
        if k > self.length:
            return False
        j = np.arange(k)
        if int(slots[0]) == self.head:
            return bool(((self.head + j) % self.max_size == slots).all())
        tail = (self.head + self.length - 1) % self.max_size
        return int(slots[0]) == tail and bool(((tail - j) % self.max_size == slots).all())

    def materialize(self) -> None:
        """Leaves dense mode: builds ``buf`` and ``pos``."""
        slots = self.in_order()
        self.dense = False
        self.pos = zeros(self.slot_capacity, _I32)
        self._compact_from(slots, max(16, 2 * len(slots)))

    def _span(self, start: int, count: int) -> np.ndarray:
        """Ring indices of the entries ``start .. start + count - 1``."""
        a = (self.head + start) % len(self.buf)
        if a + count <= len(self.buf):
            return np.arange(a, a + count, dtype=_I32)
        return np.arange(a, a + count, dtype=_I32) % len(self.buf)

    def _live_mask(self, idx: np.ndarray) -> np.ndarray:
        return self.pos[self.buf[idx]] == idx

    def add(self, slots: np.ndarray) -> None:
        n = len(slots)
        if self.dense:
            self.length += n
            self.live += n
            return
        self._reserve(n)
        idx = self._span(self.length, n)
        start = int(idx[0])
        if int(idx[-1]) - start == n - 1:  # no wrap: slices
            self.buf[start : start + n] = slots
        else:
            self.buf[idx] = slots
        if int(slots[-1]) - int(slots[0]) == n - 1 and (np.diff(slots) == 1).all():
            self.pos[int(slots[0]) : int(slots[0]) + n] = idx
        else:
            self.pos[slots] = idx
        self.length += n
        self.live += n

    def update(self, slots: np.ndarray) -> None:
        pass

    def remove(self, slots: np.ndarray) -> None:
        """Removes live ``slots``; in dense mode only evictions ``at_an_end`` (else materialize
        first)."""
        k = len(slots)
        if self.dense:
            if int(slots[0]) == self.head:
                self.head = (self.head + k) % self.max_size
            self.length -= k
            self.live -= k
            if self.live == 0:
                self.head = 0
            return
        where = self.pos[slots]
        if k and self.live == self.length and k <= self.length:
            # fast path: the k oldest in order (fifo) or the k newest, newest first (lifo)
            if int(where[0]) == self.head and (where == self._span(0, k)).all():
                self.head = (self.head + k) % len(self.buf)
            elif not (int(where[0]) == self._last_index() and (where == self._newest(k)).all()):
                k = 0
            if k:
                self.pos[slots] = -1
                self.live -= k
                self.length -= k
                if self.live == 0:
                    self.head = self.length = 0
                return
        slots = slots[where >= 0]
        self.pos[slots] = -1
        self.live -= len(slots)
        self._trim()
        if self.length > 64 and self.live * 4 < self.length:
            self._compact(len(self.buf))

    def _trim(self) -> None:
        """Drops dead entries at both ends, so ``first`` and ``last`` are live."""
        if self.live == 0:
            self.head = self.length = 0
            return
        buf, pos, cap = self.buf, self.pos, len(self.buf)
        w = 64
        while pos[buf[self.head]] != self.head:
            w = min(self.length, 2 * w)
            live = self._live_mask(self._span(0, w))
            skip = int(np.argmax(live)) if live.any() else w
            self.head = (self.head + skip) % cap
            self.length -= skip
        w = 64
        while pos[buf[(tail := (self.head + self.length - 1) % cap)]] != tail:
            w = min(self.length, 2 * w)
            live = self._live_mask(self._span(self.length - w, w))[::-1]
            self.length -= int(np.argmax(live)) if live.any() else w

    def _reserve(self, n: int) -> None:
        need = self.length + n
        cap = len(self.buf)
        if need <= cap:
            return
        if (self.length - self.live) * 4 >= self.length:
            self._compact(cap)
            if self.length + n <= cap:
                return
            need = self.length + n
        new_cap = (
            max(need, 2 * cap) if cap >= self.max_size else max(need, min(2 * cap, self.max_size))
        )
        self._compact(new_cap)

    def _compact(self, new_cap: int) -> None:
        self._compact_from(self.in_order(), new_cap)

    def _compact_from(self, slots: np.ndarray, new_cap: int) -> None:
        self.buf = zeros(max(16, new_cap), _I32)
        self.buf[: len(slots)] = slots
        self.pos[slots] = np.arange(len(slots), dtype=_I32)
        self.head, self.length = 0, len(slots)

    def in_order(self) -> np.ndarray:
        if self.dense:
            return (np.arange(self.head, self.head + self.length) % self.max_size).astype(_I32)
        idx = self._span(0, self.length)
        return self.buf[idx][self._live_mask(idx)]

    def _last_index(self) -> int:
        return (self.head + self.length - 1) % len(self.buf)

    def _newest(self, k: int) -> np.ndarray:
        return self._span(self.length - k, k)[::-1]

    def first(self) -> int:
        return self.head if self.dense else int(self.buf[self.head])

    def last(self) -> int:
        if self.dense:
            return (self.head + self.length - 1) % self.max_size
        return int(self.buf[(self.head + self.length - 1) % len(self.buf)])

    def first_k(self, k: int, *, from_end: bool = False) -> np.ndarray:
        """The ``k`` oldest (or newest) live slots."""
        if self.dense:
            j = np.arange(k)
            ends = self.head + self.length - 1 - j if from_end else self.head + j
            return (ends % self.max_size).astype(_I32)
        w = min(self.length, k if self.live == self.length else 2 * k + 16)
        while True:
            idx = self._newest(w) if from_end else self._span(0, w)
            if self.live == self.length:
                return self.buf[idx]
            live = idx[self._live_mask(idx)]
            if len(live) >= k or w == self.length:
                return self.buf[live[:k]]
            w = min(self.length, 2 * w)

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` i.i.d. uniform draws over the live slots (rejection over the ring)."""
        if self.dense:
            j = rng.integers(self.head, self.head + self.length, n)
            return j if self.head + self.length <= self.max_size else j % self.max_size
        cap = len(self.buf)
        if self.live == self.length:
            j = rng.integers(self.head, self.head + self.length, n)
            return self.buf[j if self.head + self.length <= cap else j % cap]
        out: list[np.ndarray] = []
        need = n
        while need > 0:
            m = int(need * self.length / self.live * 1.25) + 8
            idx = (self.head + rng.integers(0, self.length, m)) % cap
            live = idx[self._live_mask(idx)][:need]
            out.append(self.buf[live])
            need -= len(live)
        return out[0] if len(out) == 1 else np.concatenate(out)

    def distinct(self, k: int, rng: np.random.Generator) -> np.ndarray:
        """A uniformly random set of ``k`` distinct live slots."""
        chosen = np.empty(0, _I32)
        while len(chosen) < k:
            draws = np.concatenate([chosen, self.sample(2 * (k - len(chosen)) + 8, rng)])
            _, first = np.unique(draws, return_index=True)
            chosen = draws[np.sort(first)][:k]
        return chosen


class SumTree:
    """``p ** exponent`` per slot; leaves at ``tree[cap + slot]``, ``tree[1]`` is the total."""

    def __init__(self, slot_capacity: int, exponent: float, priorities: np.ndarray) -> None:
        self.exponent = exponent
        self.priorities = priorities  # the table's array; rebound by ``grow``
        self.cap = 1 << max(0, (slot_capacity - 1).bit_length())
        self.tree = zeros(2 * self.cap)

    def clear(self) -> None:
        self.tree = zeros(2 * self.cap)

    def grow(self, slot_capacity: int, priorities: np.ndarray | None = None) -> None:
        if priorities is not None:
            self.priorities = priorities
        cap = 1 << max(0, (slot_capacity - 1).bit_length())
        if cap <= self.cap:
            return
        tree = zeros(2 * cap)
        tree[cap : cap + self.cap] = self.tree[self.cap :]
        self.cap, self.tree = cap, tree
        lo = cap // 2
        while lo >= 1:
            tree[lo : 2 * lo] = tree[2 * lo : 4 * lo : 2] + tree[2 * lo + 1 : 4 * lo : 2]
            lo //= 2

    def _weights(self, slots: np.ndarray) -> np.ndarray:
        p = self.priorities[slots]
        return p if self.exponent == 1.0 else p**self.exponent

    def _set(self, slots: np.ndarray, values: np.ndarray) -> None:
        i = slots.astype(np.int64) + self.cap
        self.tree[i] = values
        i >>= 1
        while i[0] >= 1:
            self.tree[i] = self.tree[2 * i] + self.tree[2 * i + 1]
            i >>= 1

    def add(self, slots: np.ndarray) -> None:
        if len(slots):
            self._set(slots, self._weights(slots))

    update = add

    def remove(self, slots: np.ndarray) -> None:
        if len(slots):
            self._set(slots, np.zeros(len(slots)))

    @property
    def total(self) -> float:
        return float(self.tree[1])

    def weight(self, slots: np.ndarray) -> np.ndarray:
        return self.tree[slots.astype(np.int64) + self.cap]

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` draws with probability weight / total; requires ``total > 0``."""
        tree = self.tree
        u = rng.random(n) * tree[1]
        idx = np.ones(n, np.int64)
        while idx[0] < self.cap:
            left = tree[2 * idx]
            go_right = ((u >= left) & (tree[2 * idx + 1] > 0)) | (left <= 0)
            u -= left * go_right
            idx = 2 * idx + go_right
        return (idx - self.cap).astype(_I32)


class BestTree:
    """Tournament tree: node ``i`` holds 1 + the best slot below it (0 = none)."""

    def __init__(self, slot_capacity: int, sign: float, table: object) -> None:
        self.sign = sign  # +1: highest priority first (max_heap), -1: lowest (min_heap)
        self.table = table  # reads table.priorities and table.keys (rebound when they grow)
        self.cap = 1 << max(0, (slot_capacity - 1).bit_length())
        self.tree = zeros(2 * self.cap, np.int64)

    def clear(self) -> None:
        self.tree = zeros(2 * self.cap, np.int64)

    def grow(self, slot_capacity: int) -> None:
        cap = 1 << max(0, (slot_capacity - 1).bit_length())
        if cap <= self.cap:
            return
        tree = zeros(2 * cap, np.int64)
        tree[cap : cap + self.cap] = self.tree[self.cap :]
        self.cap, self.tree = cap, tree
        lo = cap // 2
        while lo >= 1:
            tree[lo : 2 * lo] = self._best(tree[2 * lo : 4 * lo : 2], tree[2 * lo + 1 : 4 * lo : 2])
            lo //= 2

    def _best(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        prio, keys = self.table.priorities, self.table.keys
        pa, pb = self.sign * prio[a - 1], self.sign * prio[b - 1]
        take_a = (a > 0) & ((b == 0) | (pa > pb) | ((pa == pb) & (keys[a - 1] < keys[b - 1])))
        return np.where(take_a, a, b)

    def _set(self, slots: np.ndarray, values: np.ndarray) -> None:
        i = slots.astype(np.int64) + self.cap
        self.tree[i] = values
        i >>= 1
        while i[0] >= 1:
            self.tree[i] = self._best(self.tree[2 * i], self.tree[2 * i + 1])
            i >>= 1

    def add(self, slots: np.ndarray) -> None:
        if len(slots):
            self._set(slots, slots.astype(np.int64) + 1)

    update = add

    def remove(self, slots: np.ndarray) -> None:
        if len(slots):
            self._set(slots, np.zeros(len(slots), np.int64))

    def top(self) -> int:
        return int(self.tree[1]) - 1
