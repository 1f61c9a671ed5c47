"""The memory backend against a plain-Python model of a table, under long random operation mixes.

Exercises the index structures (ring with lazy deletion and its fast paths, sum tree, tournament
trees, slot reuse, growth) far beyond what the HTTP suite reaches, without a server.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from services.replay.config import TableConfig
from services.replay.storage.memory import MemoryStore

KINDS = ["uniform", "prioritized", "fifo", "lifo", "max_heap", "min_heap"]
ORDERED = {"fifo", "lifo", "max_heap", "min_heap"}


class Model:
    """Items in insertion order: key -> [x, priority, times_sampled]."""

    def __init__(self) -> None:
        self.items: dict[int, list[float]] = {}

    def pick(self, kind: str) -> int:
        keys = list(self.items)
        if kind == "fifo":
            return keys[0]
        if kind == "lifo":
            return keys[-1]
        sign = 1 if kind == "max_heap" else -1
        return max(keys, key=lambda k: (sign * self.items[k][1], -keys.index(k)))


def columns(xs: np.ndarray) -> dict:
    return {("x",): xs.astype(np.int64), ("y", 0): np.stack([xs, -xs], 1).astype(np.float32)}


@pytest.mark.parametrize(
    ("sampler", "remover", "max_times_sampled", "deletes"),
    [(s, r, 0, True) for s, r in itertools.product(KINDS, KINDS)]
    + [(s, "fifo", 2, True) for s in KINDS]
    + [(s, r, 0, False) for s in ("uniform", "fifo", "lifo") for r in ("fifo", "lifo")],
)
async def test_random_operations_match_the_model(
    sampler: str, remover: str, max_times_sampled: int, deletes: bool
) -> None:
    rng = np.random.default_rng(hash((sampler, remover, max_times_sampled, deletes)) % 2**32)
    max_size = 37
    config = TableConfig.model_validate(
        {
            "sampler": {"kind": sampler},
            "remover": {"kind": remover},
            "max_size": max_size,
            "max_times_sampled": max_times_sampled,
        }
    )
    store = MemoryStore(seed=7)
    await store.create_table("t", config)
    model = Model()
    next_x = 0
    for step in range(200):
        op = rng.choice(["insert", "sample", "delete", "update"], p=[0.4, 0.3, 0.15, 0.15])
        if step < 80 and op == "update":  # all priorities equal at first (none stored)
            op = "delete"
        if op == "delete" and not deletes:
            op = "insert"
        if op == "insert":
            n = int(rng.integers(1, 12))
            xs = np.arange(next_x, next_x + n)
            next_x += n
            priorities = rng.choice([0.5, 1.0, 2.0, 3.0], n) if step >= 80 else np.ones(n)
            overflow = len(model.items) + n - max_size
            before = set(model.items)
            keys = await store.try_insert("t", columns(xs), priorities, None)
            assert keys is not None and len(set(keys)) == n
            if overflow > 0:
                if remover in ORDERED:
                    for _ in range(overflow):
                        del model.items[model.pick(remover)]
                else:
                    alive, _ = await _alive(store, sorted(before))
                    gone = before - set(alive)
                    assert len(gone) == overflow
                    for key in gone:
                        del model.items[key]
            for key, x, p in zip(keys, xs, priorities, strict=True):
                model.items[key] = [float(x), float(p), 0]
        elif op == "sample" and model.items:
            n = int(rng.integers(1, 6))
            available = len(model.items) * max_times_sampled - sum(
                v[2] for v in model.items.values()
            )
            result = await store.try_sample("t", n)
            if max_times_sampled and available < n:
                assert result is None
                continue
            assert result is not None and result.table_size == len(model.items)
            for i, key in enumerate(result.keys.tolist()):
                assert key in model.items
                if sampler in ORDERED:
                    assert key == model.pick(sampler)
                    assert result.probabilities[i] == 1.0
                elif sampler == "uniform":
                    assert result.probabilities[i] == pytest.approx(1 / len(model.items))
                else:
                    total = sum(v[1] for v in model.items.values())
                    assert result.probabilities[i] == pytest.approx(model.items[key][1] / total)
                item = model.items[key]
                item[2] += 1
                assert result.times_sampled[i] == item[2]
                assert result.columns[("x",)][i] == item[0]
                assert result.columns[("y", 0)][i, 1] == -item[0]
                assert result.priorities[i] == item[1]
                if max_times_sampled and item[2] >= max_times_sampled:
                    del model.items[key]
        elif op == "delete":
            keys = list(model.items)
            chosen = [k for k in keys if rng.random() < 0.2] + [10**12, 3]
            expected = len([k for k in chosen if k in model.items])
            _, deleted = await store.mutate_priorities(
                "t", np.empty(0, np.int64), np.empty(0), np.array(chosen, np.int64)
            )
            assert deleted == expected
            for k in chosen:
                model.items.pop(k, None)
        elif op == "update" and model.items:
            keys = [k for k in model.items if rng.random() < 0.3]
            priorities = rng.choice([0.5, 1.0, 2.0, 5.0], len(keys))
            updated, _ = await store.mutate_priorities(
                "t", np.array(keys, np.int64), priorities, np.empty(0, np.int64)
            )
            assert updated == len(keys)
            for k, p in zip(keys, priorities, strict=True):
                model.items[k][1] = float(p)
        counters = await store.counters("t")
        assert counters.size == len(model.items)
    alive, _ = await _alive(store, list(model.items))
    assert alive == list(model.items)
    ring = store._tables["t"].ring
    if not deletes:  # only evictions at the ends: the ring never needed its arrays
        assert ring is not None and ring.dense


async def _alive(store: MemoryStore, keys: list[int]) -> tuple[list[int], None]:
    table = store._tables["t"]
    mask, _ = table.live_slots(np.array(keys, np.int64))
    return [k for k, ok in zip(keys, mask, strict=True) if ok], None


async def test_growth_and_slot_reuse_keep_items_intact() -> None:
    store = MemoryStore(seed=1)
    config = TableConfig.model_validate({"max_size": 5000, "remover": {"kind": "uniform"}})
    await store.create_table("t", config)
    model: dict[int, int] = {}
    rng = np.random.default_rng(3)
    next_x = 0
    for _ in range(60):
        n = int(rng.integers(50, 400))
        xs = np.arange(next_x, next_x + n)
        next_x += n
        before = set(model)
        keys = await store.try_insert("t", columns(xs), np.ones(n), None)
        assert keys is not None
        alive, _ = await _alive(store, sorted(before))
        for key in before - set(alive):
            del model[key]
        model.update(zip(keys, xs.tolist(), strict=True))
        doomed = [k for k in model if rng.random() < 0.1]
        await store.mutate_priorities("t", np.empty(0, np.int64), np.empty(0), np.array(doomed))
        for k in doomed:
            del model[k]
        result = await store.try_sample("t", 500)
        assert result is not None
        for key, x in zip(result.keys.tolist(), result.columns[("x",)].tolist(), strict=True):
            assert model[key] == x
    assert (await store.counters("t")).size == len(model)
