"""RedisStore and MemoryStore give identical answers where the semantics leave no randomness.

With deterministic samplers and removers (fifo, lifo, max_heap, min_heap), every answer (keys'
insert sequence numbers, probabilities, priorities, times_sampled, data, counters, mutate counts,
refusals) must be equal for the same random sequence of operations. (Which slot an item lives in,
the low bits of its key, is each backend's business.)
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pytest

from services.replay.storage.memory import MemoryStore
from services.replay.storage.redis_store import RedisStore
from tests.replay_redis.conftest import columns, config

KINDS = ["fifo", "lifo", "max_heap", "min_heap"]
LIMITERS: list[dict[str, Any]] = [
    {"kind": "min_size", "min_size_to_sample": 2},
    {
        "kind": "sample_to_insert_ratio",
        "samples_per_insert": 1.5,
        "min_size_to_sample": 3,
        "error_buffer": 6.0,
    },
]


SLOT_BITS = 4  # max_size 12


def _same(a: Any, b: Any) -> None:
    if a is None or b is None:
        assert a is None and b is None
        return
    if isinstance(a, tuple):  # mutate counts
        assert a == b
        return
    if isinstance(a, list):  # insert keys
        assert [k >> SLOT_BITS for k in a] == [k >> SLOT_BITS for k in b]
        return
    np.testing.assert_array_equal(a.keys >> SLOT_BITS, b.keys >> SLOT_BITS)
    for field in ("probabilities", "priorities", "times_sampled"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field), err_msg=field)
    assert a.table_size == b.table_size
    assert a.columns.keys() == b.columns.keys()
    for path in a.columns:
        np.testing.assert_array_equal(a.columns[path], b.columns[path])


@pytest.mark.parametrize(("sampler", "remover"), list(itertools.product(KINDS, KINDS)))
async def test_same_answers_as_memory(open_store: Any, sampler: str, remover: str) -> None:
    redis_store: RedisStore = await open_store()
    memory = MemoryStore(seed=0)
    rng = np.random.default_rng(KINDS.index(sampler) * 4 + KINDS.index(remover))
    stores = (redis_store, memory)
    done = {"sampled": 0, "updated": 0, "deleted": 0}
    for mts, limiter in zip((0, 2), LIMITERS, strict=True):
        name = f"t{mts}{limiter['kind']}"
        cfg = config(
            sampler=sampler,
            remover=remover,
            max_size=12,
            max_times_sampled=mts,
            rate_limiter=limiter,
        )
        for store in stores:
            await store.create_table(name, cfg)
        keys: tuple[list[int], list[int]] = ([], [])  # each store's own keys, in insert order
        x = 0
        for _ in range(60):
            op = rng.choice(["insert", "sample", "mutate", "reset"], p=[0.4, 0.4, 0.15, 0.05])
            if op == "insert":
                n = int(rng.integers(1, 7))
                cols = columns(range(x, x + n))
                x += n
                prio = rng.choice([0.0, 1.0, 2.5, 7.0], n)
                got = [await s.try_insert(name, cols, prio, {}) for s in stores]
                _same(*got)
                for mine, new in zip(keys, got, strict=True):
                    mine.extend(new or [])
            elif op == "sample":
                n = int(rng.integers(1, 6))
                got = [await s.try_sample(name, n) for s in stores]
                _same(*got)
                done["sampled"] += n if got[0] is not None else 0
            elif op == "mutate":  # indices into the keys, -1: not a key, -2: an unknown key
                known = len(keys[0])
                pool = np.array([*range(known), -1, -2, *range(max(0, known - 3), known)])
                upd = rng.choice(pool, int(rng.integers(0, 6)))
                recent = np.array([*range(max(0, known - 12), known), -1])  # likelier live
                dels = rng.choice(recent, int(rng.integers(0, 4)))
                prio = rng.choice([0.0, 1.0, 2.5, 7.0], len(upd))

                def as_keys(idx: np.ndarray, mine: list[int]) -> np.ndarray:
                    table = np.array([*mine, 12345, -1], np.int64)  # [-2] unknown, [-1] not a key
                    return table[idx.astype(np.int64)]

                got = [
                    await s.mutate_priorities(name, as_keys(upd, k), prio, as_keys(dels, k))
                    for s, k in zip(stores, keys, strict=True)
                ]
                _same(*got)
                done["updated"] += got[0][0]
                done["deleted"] += got[0][1]
            else:
                for s in stores:
                    await s.reset(name)
            counters = [await s.counters(name) for s in stores]
            assert counters[0] == counters[1]
    assert done["sampled"] > 20 and done["updated"] > 0 and done["deleted"] > 0, done
