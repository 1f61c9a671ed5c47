"""One table of the memory backend: columns, per-slot arrays, index structures, counters.

See ``memory.py`` for the layout; everything here is synchronous, so each call is atomic.
"""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np

from services.replay.config import TableConfig
from services.replay.storage.base import Columns, SampleResult, Signature, check_columns
from services.replay.storage.structures import BestTree, OrderRing, SumTree, zeros

_INITIAL_CAPACITY = 1024


class _Selector:
    """A sampler or remover over one structure: ``draw`` i.i.d. picks, ``choose`` distinct ones."""

    def __init__(self, kind: str, structure: Any, table: MemoryTable) -> None:
        self.kind, self.s, self.t = kind, structure, table

    def draw(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """``n`` draws from the table as it is (nothing removed in between), with probabilities."""
        kind, s, size = self.kind, self.s, self.t.size
        if kind == "uniform":
            return s.sample(n, self.t.rng), np.full(n, 1.0 / size)
        if kind == "prioritized":
            total = s.total
            if total > 0:
                slots = s.sample(n, self.t.rng)
                return slots, s.weight(slots) / total
            return self.t.rng.choice(self.t.occupied(), n), np.full(n, 1.0 / size)
        slot = s.first() if kind == "fifo" else s.last() if kind == "lifo" else s.top()
        return np.full(n, slot, np.int32), np.ones(n)

    def choose(self, k: int) -> np.ndarray:
        """``k`` distinct slots to remove."""
        kind, s = self.kind, self.s
        if kind == "uniform":
            return s.distinct(k, self.t.rng)
        if kind in ("fifo", "lifo"):
            return s.first_k(k, from_end=kind == "lifo")
        chosen = []
        for _ in range(k):  # prioritized and heap removers: one pick at a time
            if kind == "prioritized" and s.total <= 0:
                done = np.asarray(chosen, np.int32)
                rest = np.setdiff1d(self.t.occupied(), done)
                picked = self.t.rng.choice(rest, k - len(done), replace=False)
                return np.concatenate([done, picked]).astype(np.int32)
            slot = int(s.sample(1, self.t.rng)[0]) if kind == "prioritized" else s.top()
            chosen.append(slot)
            s.remove(np.array([slot], np.int32))
        return np.asarray(chosen, np.int32)


class MemoryTable:
    def __init__(self, config: TableConfig, rng: np.random.Generator) -> None:
        self.config = config
        self.limiter = config.limiter
        self.rng = rng
        self.slot_bits = max(1, (config.max_size - 1).bit_length())
        self.seq = 0  # insert sequence, never reset, so keys are never reused
        self.event: asyncio.Event | None = None
        self.configured = config.signature_leaves()
        self.elide_priorities = not {config.sampler.kind, config.remover.kind} & {
            "prioritized",
            "max_heap",
            "min_heap",
        }
        self.capacity = min(config.max_size, _INITIAL_CAPACITY)
        self.structures: list[Any] = []
        by_kind: dict[Any, Any] = {}
        self.sampler = self._selector(config.sampler, by_kind)
        self.remover = self._selector(config.remover, by_kind)
        self.ring: OrderRing | None = by_kind.get("ring")
        self.reset()

    def _selector(self, spec: Any, by_kind: dict[Any, Any]) -> _Selector:
        kind = spec.kind
        ident: Any = (
            "ring" if kind in ("uniform", "fifo", "lifo") else (kind, spec.priority_exponent)
        )
        if ident not in by_kind:
            if ident == "ring":
                s: Any = OrderRing(self.capacity, self.config.max_size)
            elif kind == "prioritized":
                s = SumTree(self.capacity, float(spec.priority_exponent), np.empty(0))
            else:
                s = BestTree(self.capacity, 1.0 if kind == "max_heap" else -1.0, self)
            by_kind[ident] = s
            self.structures.append(s)
        return _Selector(kind, by_kind[ident], self)

    def reset(self) -> None:
        self.signature: Signature | None = self.configured
        self.template: Any = self.config.signature
        self.columns: dict[tuple[str | int, ...], np.ndarray] = {}
        self.keys = zeros(self.capacity, np.int64)
        # While every priority is the same (e.g. all 1.0 in a uniform table) none is stored.
        self.priorities: np.ndarray | None = None if self.elide_priorities else zeros(self.capacity)
        self.same_priority: float | None = None
        self.times_sampled = zeros(self.capacity, np.int32)
        self.free = zeros(self.capacity, np.int32)
        self.num_free = 0
        self.high_water = 0  # slots [0, high_water) have been used
        self.size = self.inserts = self.samples = self.deletes = 0
        self.total_times_sampled = 0
        if self.signature is not None:
            self.columns = self._allocate_columns(self.signature)
        for s in self.structures:
            s.clear()
            if isinstance(s, SumTree):
                s.grow(self.capacity, self.priorities)

    def _allocate_columns(self, signature: Signature) -> dict[tuple[str | int, ...], np.ndarray]:
        return {
            path: zeros((self.capacity, *shape), dtype)
            for path, (dtype, shape) in signature.items()
        }

    def notify(self) -> None:
        if self.event is not None:
            self.event.set()
            self.event = None

    def occupied(self) -> np.ndarray:
        return np.flatnonzero(self.keys[: self.high_water] >= 0).astype(np.int32)

    # -- slots -------------------------------------------------------------------------------
    def _grow(self, needed: int) -> None:
        cap = self.capacity
        while cap < needed:
            cap = min(2 * cap, self.config.max_size)
        hw = self.high_water

        def grown(a: np.ndarray, used: int) -> np.ndarray:
            out = zeros((cap, *a.shape[1:]), a.dtype)
            out[:used] = a[:used]
            return out

        self.columns = {p: grown(a, hw) for p, a in self.columns.items()}
        self.keys = grown(self.keys, hw)
        if self.priorities is not None:
            self.priorities = grown(self.priorities, hw)
        self.times_sampled = grown(self.times_sampled, hw)
        self.free = grown(self.free, self.num_free)
        self.capacity = cap
        for s in self.structures:
            if isinstance(s, SumTree):
                s.grow(cap, self.priorities)
            else:
                s.grow(cap)

    def _allocate(self, n: int) -> np.ndarray:
        if self.ring is not None and self.ring.dense:
            slots = self.ring.next_slots(n)
            top = int(slots.max()) + 1
            if top > self.capacity:
                self._grow(top)
            self.high_water = max(self.high_water, top)
            return slots
        reuse = min(n, self.num_free)
        fresh = n - reuse
        if self.high_water + fresh > self.capacity:
            self._grow(self.high_water + fresh)
        self.num_free -= reuse
        slots = np.empty(n, np.int32)
        slots[:reuse] = self.free[self.num_free : self.num_free + reuse]
        slots[reuse:] = np.arange(self.high_water, self.high_water + fresh, dtype=np.int32)
        self.high_water += fresh
        return slots

    def priorities_of(self, slots: np.ndarray) -> np.ndarray:
        if self.priorities is None:
            return np.full(len(slots), self.same_priority)
        return self.priorities[slots]

    def _set_priorities(self, where: slice | np.ndarray, values: np.ndarray) -> None:
        if self.priorities is None:
            if self.same_priority is None and len(values):
                self.same_priority = float(values[0])
            if (values == self.same_priority).all():
                return
            self.priorities = zeros(self.capacity)
            self.priorities[: self.high_water] = self.same_priority
        self.priorities[where] = values

    def _dense_only(self) -> bool:
        """Is the table's only structure a ring still in dense mode?"""
        return self.ring is not None and self.ring.dense and len(self.structures) == 1

    def _evict_oldest_run(self, k: int) -> bool:
        """Fast path of a fifo remover on a dense ring: evicts slots ``head .. head + k - 1``."""
        ring = self.ring
        if not (self._dense_only() and self.remover.kind == "fifo"):
            return False
        assert ring is not None
        start = ring.head
        if start + k > self.config.max_size:
            return False
        ring.head = (start + k) % self.config.max_size
        ring.length -= k
        ring.live -= k
        if ring.live == 0:
            ring.head = 0
        self.keys[start : start + k] = -1
        self.size -= k
        self.deletes += k
        if self.config.max_times_sampled:
            self.total_times_sampled -= int(self.times_sampled[start : start + k].sum())
        return True

    def _fresh_run(self, n: int) -> slice | None:
        """Fast path of a dense ring: the next ``n`` slots as a slice, when they do not wrap."""
        if not self._dense_only():
            return None
        assert self.ring is not None
        start = (self.ring.head + self.ring.length) % self.config.max_size
        if start + n > self.config.max_size:
            return None
        if start + n > self.capacity:
            self._grow(start + n)
        self.high_water = max(self.high_water, start + n)
        return slice(start, start + n)

    def remove(self, slots: np.ndarray, *, evict: bool = False) -> None:
        """Removes live, unique ``slots`` (counted as deletes); ``evict``: by the remover."""
        ring = self.ring
        if ring is not None and ring.dense and not (evict and ring.at_an_end(slots)):
            ring.materialize()  # from now on, slots come from the free list
            free = np.flatnonzero(self.keys[: self.high_water] < 0).astype(np.int32)
            self.free[: len(free)] = free
            self.num_free = len(free)
        for s in self.structures:
            s.remove(slots)
        self.keys[_as_range(slots)] = -1
        if ring is None or not ring.dense:
            self.free[self.num_free : self.num_free + len(slots)] = slots
            self.num_free += len(slots)
        self.size -= len(slots)
        self.deletes += len(slots)
        if self.config.max_times_sampled:
            self.total_times_sampled -= int(self.times_sampled[slots].sum())

    def live_slots(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(mask, slots)``: which int64 ``keys`` are live, and their slots."""
        slots = (keys & ((1 << self.slot_bits) - 1)).astype(np.int32)
        mask = (keys >= 0) & (slots < self.high_water)
        mask &= self.keys[np.where(mask, slots, 0)] == keys
        return mask, slots[mask]

    # -- operations ---------------------------------------------------------------------------
    def insert(self, columns: Columns, priorities: np.ndarray, template: Any) -> list[int] | None:
        n = len(priorities)
        if self.signature is None:
            signature = {p: (c.dtype, c.shape[1:]) for p, c in columns.items()}
            self.columns = self._allocate_columns(signature)  # first: a failure changes nothing
            self.signature, self.template = signature, template
        else:
            check_columns(columns, self.signature)
        if not self.limiter.can_insert(n, self.inserts, self.samples, self.deletes):
            return None
        overflow = self.size + n - self.config.max_size
        if overflow > 0 and not self._evict_oldest_run(overflow):
            self.remove(self.remover.choose(overflow), evict=True)
        run = self._fresh_run(n)
        if run is not None:  # the dense fifo table's usual case: no slot or key arrays at all
            start = run.start
            step = (1 << self.slot_bits) + 1  # key of item i: (seq + i) << bits | (start + i)
            first = (self.seq << self.slot_bits) | start
            keys = np.arange(first, first + n * step, step, dtype=np.int64)
            where = run
            self.ring.length += n  # type: ignore[union-attr]
            self.ring.live += n  # type: ignore[union-attr]
        else:
            slots = self._allocate(n)
            seq = np.arange(self.seq, self.seq + n, dtype=np.int64)
            keys = (seq << self.slot_bits) | slots
            where = _as_range(slots)  # a slice in the steady state of a fifo table: plain copies
        self.seq += n
        self.keys[where] = keys
        self._set_priorities(where, priorities)
        self.times_sampled[where] = 0
        for path, col in columns.items():
            self.columns[path][where] = col
        if run is None:
            for s in self.structures:  # after the priorities and keys they read
                s.add(slots)
        self.size += n
        self.inserts += n
        self.notify()
        return keys.tolist()

    def sample(self, n: int) -> SampleResult | None:
        mts = self.config.max_times_sampled
        if (
            self.size == 0
            or not self.limiter.can_sample(n, self.inserts, self.samples, self.deletes)
            or (mts and self.size * mts - self.total_times_sampled < n)
        ):
            return None
        size = self.size
        if mts:
            slots, probs, keys, ts = self._draw_removing(n, mts)
        else:
            slots, probs = self.sampler.draw(n)
            keys = self.keys[slots]
            ts = self._count_draws(slots)
        self.samples += n
        self.total_times_sampled += n
        self.notify()
        return SampleResult(
            keys=keys,
            probabilities=probs,
            priorities=self.priorities_of(slots),
            times_sampled=ts,
            table_size=size,
            columns={path: col.take(slots, axis=0) for path, col in self.columns.items()},
        )

    def _count_draws(self, slots: np.ndarray) -> np.ndarray:
        """Adds the draws to times_sampled; returns each draw's count including itself.

        A slot drawn k times in one batch counts 1..k on top of what it had, in draw order (as
        if drawn one after the other). One stable argsort, no np.unique: a batch of 256 from a
        table of 20k repeats a slot four times in five, and this is the sample's hot path.
        """
        n = len(slots)
        order = np.argsort(slots, kind="stable")
        ordered = slots[order]
        position = np.arange(n)
        starts = np.empty(n, bool)
        starts[:1] = True
        np.not_equal(ordered[1:], ordered[:-1], out=starts[1:])
        rank = position - np.maximum.accumulate(np.where(starts, position, 0))
        counts = self.times_sampled[ordered] + rank + 1
        last = np.empty(n, bool)  # the last draw of each slot holds its total
        last[-1:] = True
        last[:-1] = starts[1:]
        self.times_sampled[ordered[last]] = counts[last]
        ts = np.empty(n, np.int64)
        ts[order] = counts
        return ts

    def _draw_removing(self, n: int, mts: int) -> tuple[np.ndarray, ...]:
        """n draws in sequence, removing each item as it reaches ``max_times_sampled``."""
        slots = np.empty(n, np.int32)
        probs, keys, ts = np.empty(n), np.empty(n, np.int64), np.empty(n, np.int64)
        for i in range(n):
            picked, p = self.sampler.draw(1)
            slot = int(picked[0])
            count = int(self.times_sampled[slot]) + 1
            self.times_sampled[slot] = count
            slots[i], probs[i], keys[i], ts[i] = slot, p[0], self.keys[slot], count
            if count >= mts:
                self.remove(picked[:1])
        return slots, probs, keys, ts

    def mutate(
        self, keys: np.ndarray, priorities: np.ndarray, deletes: np.ndarray
    ) -> tuple[int, int]:
        updated = deleted = 0
        if len(keys):
            _, last = np.unique(keys[::-1], return_index=True)  # a repeated key: last value wins
            last = len(keys) - 1 - last
            mask, slots = self.live_slots(keys[last])
            if len(slots):
                self._set_priorities(slots, priorities[last][mask])
                for s in self.structures:
                    s.update(slots)
                updated = len(slots)
        if len(deletes):
            _, slots = self.live_slots(np.unique(deletes))
            if len(slots):
                self.remove(slots)
                deleted = len(slots)
                self.notify()
        return updated, deleted


def _as_range(slots: np.ndarray) -> slice | np.ndarray:
    """``slots`` as a slice when they are consecutive and ascending (cheaper to index with)."""
    if len(slots) > 1 and (np.diff(slots) == 1).all():
        return slice(int(slots[0]), int(slots[-1]) + 1)
    return slots
