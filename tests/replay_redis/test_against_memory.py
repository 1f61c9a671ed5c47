"""RedisStore and MemoryStore give identical answers where the semantics leave no randomness.

With deterministic samplers and removers (fifo, lifo, max_heap, min_heap), every answer (keys,
probabilities, priorities, times_sampled, data, counters, mutate counts, refusals) must be equal
for the same random sequence of operations.
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


async def _same(a: Any, b: Any) -> Any:
    if a is None or b is None:
        assert a is None and b is None
        return a
    if isinstance(a, list | tuple):
        assert list(a) == list(b)
        return a
    for field in ("keys", "probabilities", "priorities", "times_sampled"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field), err_msg=field)
    assert a.table_size == b.table_size
    assert a.columns.keys() == b.columns.keys()
    for path in a.columns:
        np.testing.assert_array_equal(a.columns[path], b.columns[path])
    return a


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
        keys: list[int] = []
        x = 0
        for _ in range(60):
            op = rng.choice(["insert", "sample", "mutate", "reset"], p=[0.4, 0.4, 0.15, 0.05])
            if op == "insert":
                n = int(rng.integers(1, 7))
                cols = columns(range(x, x + n))
                x += n
                prio = rng.choice([0.0, 1.0, 2.5, 7.0], n)
                got = [await s.try_insert(name, cols, prio, {}) for s in stores]
                keys += await _same(*got) or []
            elif op == "sample":
                n = int(rng.integers(1, 6))
                if await _same(*[await s.try_sample(name, n) for s in stores]) is not None:
                    done["sampled"] += n
            elif op == "mutate":
                pool = np.array([*keys, -1, 12345, *keys[-3:]], np.int64)
                upd = rng.choice(pool, int(rng.integers(0, 6)))
                recent = np.array([*keys[-12:], -1], np.int64)  # likelier to be live
                dels = rng.choice(recent, int(rng.integers(0, 4)))
                prio = rng.choice([0.0, 1.0, 2.5, 7.0], len(upd))
                got = [await s.mutate_priorities(name, upd, prio, dels) for s in stores]
                updated, deleted = await _same(*got)
                done["updated"] += updated
                done["deleted"] += deleted
            else:
                for s in stores:
                    await s.reset(name)
            counters = [await s.counters(name) for s in stores]
            assert counters[0] == counters[1]
    assert done["sampled"] > 20 and done["updated"] > 0 and done["deleted"] > 0, done
