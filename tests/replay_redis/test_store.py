"""RedisStore against a real redis-server: tables, items, samplers, removers, the rate limiter."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import numpy as np
import pytest
import redis

from services.replay.storage.redis_store import RedisStore
from shared.errors import Conflict, InvalidRequest, NotFound
from tests.replay_redis.conftest import TEMPLATE, config, insert


async def test_create_is_idempotent_and_refuses_another_config(store: RedisStore) -> None:
    assert await store.create_table("t", config())
    assert not await store.create_table("t", config())
    with pytest.raises(Conflict):
        await store.create_table("t", config(max_size=5))
    assert await store.get_config("t") == config()
    assert await store.table_names() == ["t"]
    with pytest.raises(NotFound):
        await store.get_config("missing")
    with pytest.raises(NotFound):
        await insert(store, "missing", [1])
    with pytest.raises(NotFound):
        await store.try_sample("missing", 1)


async def test_insert_then_sample_round_trips_every_dtype(store: RedisStore) -> None:
    await store.create_table("t", config(sampler="fifo", remover="fifo"))
    cols = {
        ("a", 0): np.array([[True, False]] * 3),
        ("a", 1): np.arange(3, dtype=np.float16),
        ("b",): np.arange(3 * 2 * 5, dtype=">i4").reshape(3, 2, 5),
        ("c",): np.array([2**64 - 1, 0, 7], np.uint64),
        ("d",): np.zeros((3, 0), np.float32),
    }
    template = {"a": [{}, {}], "b": {}, "c": {}, "d": {}}  # stored as given, only shown by GET
    keys = await store.try_insert("t", cols, np.array([1.0, 2.0, 3.0]), template)
    assert keys is not None and len(set(keys)) == 3
    assert await store.template("t") == template
    signature = await store.signature("t")
    assert signature is not None and signature[("b",)] == (np.dtype(">i4"), (2, 5))
    result = await store.try_sample("t", 2)
    assert result is not None
    assert result.keys.tolist() == [keys[0], keys[0]]
    assert result.times_sampled.tolist() == [1, 2]
    assert result.priorities.tolist() == [1.0, 1.0]
    assert result.probabilities.tolist() == [1.0, 1.0]
    assert result.table_size == 3
    for path, col in cols.items():
        np.testing.assert_array_equal(result.columns[path], col[[0, 0]])
        assert result.columns[path].dtype == col.dtype


async def test_keys_encode_slots_and_are_never_reused(store: RedisStore) -> None:
    await store.create_table("t", config(max_size=4))
    first = await insert(store, "t", range(4))
    assert first is not None
    assert [k & 3 for k in first] == [0, 1, 2, 3]  # slot_bits = 2
    second = await insert(store, "t", range(2))
    await store.reset("t")
    third = await insert(store, "t", range(3))
    assert second is not None and third is not None
    assert len(set(first + second + third)) == 9
    assert [k >> 2 for k in third] == [6, 7, 8]


async def test_signature_is_fixed_by_the_first_insert_and_forgotten_by_reset(
    store: RedisStore, open_store: Any
) -> None:
    await store.create_table("t", config())
    assert await store.signature("t") is None
    assert await store.template("t") is None
    await insert(store, "t", [1, 2])
    other = await open_store()  # another process that has not seen the signature yet
    assert await other.signature("t") is not None
    bad = {("x",): np.zeros(2, np.float32)}
    with pytest.raises(InvalidRequest):
        await other.try_insert("t", bad, np.ones(2), {"x": {"dtype": "<f4", "shape": []}})
    with pytest.raises(InvalidRequest):
        await store.try_insert("t", bad, np.ones(2), {"x": {"dtype": "<f4", "shape": []}})
    assert (await store.counters("t")).inserts == 2
    await store.reset("t")
    assert await store.template("t") is None
    assert await other.try_insert("t", bad, np.ones(2), {"x": {}}) is not None
    result = await store.try_sample("t", 3)  # this process learns the new signature
    assert result is not None and list(result.columns) == [("x",)]


async def test_configured_signature_survives_reset(store: RedisStore) -> None:
    await store.create_table("t", config(signature=TEMPLATE, sampler="fifo"))
    assert await store.template("t") == TEMPLATE
    await store.reset("t")
    assert (await store.signature("t"))[("x",)] == (np.dtype("<i8"), ())  # type: ignore[index]
    with pytest.raises(InvalidRequest):
        await store.try_insert("t", {("x",): np.zeros(1, np.int32)}, np.ones(1), {})
    assert await insert(store, "t", [5, 6]) is not None
    result = await store.try_sample("t", 1)
    assert result is not None
    assert result.columns[("x",)].tolist() == [5]
    assert result.columns[("obs",)].tolist() == [[5.0, 10.0, 15.0]]


async def test_uniform_sampler(store: RedisStore) -> None:
    await store.create_table("t", config(sampler="uniform"))
    await insert(store, "t", range(10))
    counts = np.zeros(10)
    for _ in range(10):
        result = await store.try_sample("t", 1000)
        assert result is not None
        np.testing.assert_array_equal(result.probabilities, 0.1)
        counts += np.bincount(result.columns[("x",)], minlength=10)
        np.testing.assert_array_equal(result.columns[("obs",)][:, 2], 3 * result.columns[("x",)])
    assert np.all(np.abs(counts - 1000) < 200)  # 6+ sigma


@pytest.mark.parametrize("max_size", [1, 16, 5000])
@pytest.mark.parametrize("exponent", [1.0, 0.5])
async def test_prioritized_sampler(store: RedisStore, max_size: int, exponent: float) -> None:
    sampler = {"kind": "prioritized", "priority_exponent": exponent}
    await store.create_table("t", config(sampler=sampler, max_size=max_size))
    priorities = np.array([1.0, 2.0, 3.0, 4.0, 0.0, 8.0])[:max_size]
    fillers = 0
    if max_size > 16:  # a deep tree (4 levels) with holes: keep every 100th of 4000 items
        keys = await insert(store, "t", range(100, 4100), np.full(4000, 3.0))
        assert keys is not None
        doomed = np.array([k for i, k in enumerate(keys) if i % 100])
        assert await store.mutate_priorities("t", doomed[:0], np.array([]), doomed) == (0, 3960)
        fillers = 40
    await insert(store, "t", range(len(priorities)), priorities)
    weights = np.concatenate([priorities, np.full(100, 3.0)]) ** exponent
    total = weights[: len(priorities)].sum() + fillers * 3.0**exponent
    result = await store.try_sample("t", 4000)
    assert result is not None
    x = np.minimum(result.columns[("x",)], len(priorities))  # fillers -> one bin
    np.testing.assert_allclose(result.probabilities, weights[x] / total, rtol=1e-9)
    np.testing.assert_allclose(result.priorities, np.append(priorities, 3.0)[x])
    expected = 4000 * np.append(weights[: len(priorities)], fillers * 3.0**exponent) / total
    counts = np.bincount(x, minlength=len(priorities) + 1)
    assert np.all(np.abs(counts - expected) <= 6 * np.sqrt(expected) + 1)


async def test_prioritized_with_only_zero_priorities_samples_uniformly(store: RedisStore) -> None:
    await store.create_table("t", config(sampler="prioritized", max_size=300))
    keys = await insert(store, "t", range(300), np.zeros(300))
    assert keys is not None
    await store.mutate_priorities("t", np.array([], np.int64), np.array([]), np.array(keys[:250]))
    result = await store.try_sample("t", 5000)
    assert result is not None
    np.testing.assert_array_equal(result.probabilities, 1 / 50)
    counts = np.bincount(result.columns[("x",)], minlength=300)
    assert counts[:250].sum() == 0
    assert np.all(np.abs(counts[250:] - 100) < 60)


@pytest.mark.parametrize(
    ("sampler", "expected"),
    [("fifo", 0), ("lifo", 4), ("max_heap", 2), ("min_heap", 1)],  # ties: oldest
)
async def test_deterministic_samplers(store: RedisStore, sampler: str, expected: int) -> None:
    await store.create_table("t", config(sampler=sampler))
    await insert(store, "t", range(5), [5.0, 0.5, 9.0, 9.0, 0.5])
    result = await store.try_sample("t", 3)
    assert result is not None
    assert result.columns[("x",)].tolist() == [expected] * 3
    assert result.times_sampled.tolist() == [1, 2, 3]


@pytest.mark.parametrize(
    ("remover", "survivors"),
    [
        ("fifo", {2, 3, 5, 6}),
        ("lifo", {0, 1, 5, 6}),
        ("max_heap", {1, 3, 5, 6}),  # ties: the oldest goes first
        ("min_heap", {0, 2, 5, 6}),
    ],
)
async def test_deterministic_removers(store: RedisStore, remover: str, survivors: set) -> None:
    await store.create_table("t", config(max_size=4, remover=remover))
    await insert(store, "t", range(4), [5.0, 1.0, 5.0, 1.0])
    await insert(store, "t", [5, 6], [0.0, 0.0])
    assert (await store.counters("t")).deletes == 2
    result = await store.try_sample("t", 400)
    assert result is not None
    assert set(result.columns[("x",)].tolist()) == survivors


@pytest.mark.parametrize("remover", ["uniform", "prioritized"])
async def test_random_removers_keep_max_size(store: RedisStore, remover: str) -> None:
    await store.create_table("t", config(max_size=50, remover=remover))
    for i in range(20):
        priorities = np.zeros(7) if i == 10 else None
        assert await insert(store, "t", range(7 * i, 7 * i + 7), priorities) is not None
    counters = await store.counters("t")
    assert (counters.size, counters.inserts, counters.deletes) == (50, 140, 90)
    result = await store.try_sample("t", 2000)
    assert result is not None
    assert len(set(result.keys.tolist())) == 50
    assert len(set(result.columns[("x",)].tolist())) == 50


async def test_max_times_sampled_removes_within_a_batch(store: RedisStore) -> None:
    await store.create_table("t", config(sampler="fifo", max_times_sampled=2))
    await insert(store, "t", range(3))
    result = await store.try_sample("t", 5)
    assert result is not None
    assert result.columns[("x",)].tolist() == [0, 0, 1, 1, 2]
    assert result.times_sampled.tolist() == [1, 2, 1, 2, 1]
    assert await store.try_sample("t", 2) is None  # one draw left
    counters = await store.counters("t")
    assert (counters.size, counters.samples, counters.deletes) == (1, 5, 2)
    assert (await store.try_sample("t", 1)) is not None
    assert await store.try_sample("t", 1) is None  # empty


async def test_mutate_priorities(store: RedisStore) -> None:
    await store.create_table("t", config(sampler="max_heap", max_size=8))
    keys = await insert(store, "t", range(4), [1.0, 2.0, 3.0, 4.0])
    assert keys is not None
    updates = np.array([keys[0], keys[0], -1, keys[1] + 2**40, keys[2]])
    updated, deleted = await store.mutate_priorities(
        "t", updates, np.array([7.0, 9.0, 1.0, 1.0, 0.0]), np.array([keys[3], keys[3], -1])
    )
    assert (updated, deleted) == (2, 1)
    result = await store.try_sample("t", 1)
    assert result is not None
    assert result.keys.tolist() == [keys[0]] and result.priorities.tolist() == [9.0]
    assert await store.mutate_priorities("t", np.array([keys[3]]), np.ones(1), np.array([])) == (
        0,
        0,
    )
    counters = await store.counters("t")
    assert (counters.size, counters.deletes) == (3, 1)


async def test_min_size_limiter(store: RedisStore) -> None:
    await store.create_table(
        "t", config(rate_limiter={"kind": "min_size", "min_size_to_sample": 3})
    )
    await insert(store, "t", range(2))
    assert await store.try_sample("t", 1) is None
    await insert(store, "t", [2])
    assert await store.try_sample("t", 100) is not None


async def test_sample_to_insert_ratio_limiter_boundaries(store: RedisStore) -> None:
    limiter = {
        "kind": "sample_to_insert_ratio",
        "samples_per_insert": 2.0,
        "min_size_to_sample": 2,
        "error_buffer": [0.0, 6.0],  # min_diff, max_diff
    }
    await store.create_table("t", config(rate_limiter=limiter))
    # inserts + n - deletes <= 2, or (inserts + n) * 2 - samples <= 6
    assert await insert(store, "t", range(3)) is not None  # 3 * 2 - 0 = 6
    assert await insert(store, "t", [3]) is None  # 8 > 6
    # sample n: diff - n >= 0 with diff = inserts * 2 - samples = 6
    assert await store.try_sample("t", 7) is None
    assert await store.try_sample("t", 6) is not None
    assert await store.try_sample("t", 1) is None
    assert await insert(store, "t", range(4)) is None  # 14 - 6 = 8 > 6
    assert await insert(store, "t", range(3)) is not None  # 12 - 6 = 6
    counters = await store.counters("t")
    assert (counters.inserts, counters.samples) == (6, 6)


async def test_queue_limiter(store: RedisStore) -> None:
    queue = {"kind": "queue", "size": 3}
    await store.create_table(
        "q", config(sampler="fifo", remover="fifo", max_times_sampled=1, rate_limiter=queue)
    )
    assert await insert(store, "q", range(3)) is not None
    assert await insert(store, "q", [3]) is None
    result = await store.try_sample("q", 2)
    assert result is not None and result.columns[("x",)].tolist() == [0, 1]
    assert await insert(store, "q", [3, 4]) is not None
    assert await store.try_sample("q", 4) is None
    result = await store.try_sample("q", 3)
    assert result is not None and result.columns[("x",)].tolist() == [2, 3, 4]


async def test_reset_empties_and_zeroes(store: RedisStore, redis_url: str) -> None:
    await store.create_table("t", config(sampler="prioritized", remover="max_heap"))
    await insert(store, "t", range(100))
    await store.try_sample("t", 10)
    await store.reset("t")
    counters = await store.counters("t")
    assert (counters.size, counters.inserts, counters.samples, counters.deletes) == (0, 0, 0, 0)
    assert await store.try_sample("t", 1) is None
    client = redis.Redis.from_url(redis_url)
    assert sorted(k.decode() for k in client.keys("rlfleet:{t:t}*")) == ["rlfleet:{t:t}:h"]
    client.close()
    await insert(store, "t", range(5))
    assert (await store.counters("t")).size == 5


async def test_records_fill_segments_allocated_once(store: RedisStore, redis_url: str) -> None:
    await store.create_table("big", config(sampler="fifo", max_size=250, max_times_sampled=1))
    x = np.arange(250)
    data = {("v",): (x[:, None] + np.arange(625)).astype(np.float64)}  # 5000 B records
    for start in range(0, 250, 50):  # batches cross the segment boundaries
        rows = slice(start, start + 50)
        assert (
            await store.try_insert("big", {("v",): data[("v",)][rows]}, np.ones(50), {}) is not None
        )
    client = redis.Redis.from_url(redis_url)
    segments = [f"rlfleet:{{t:big}}:d:{s}" for s in range(3)]
    # 104 records (20 B of meta fields + 5000 B) per 512 KiB segment; the last cut to max_size
    assert [client.strlen(k) for k in segments] == [104 * 5020, 104 * 5020, 42 * 5020]
    assert client.memory_usage(segments[0]) < 2**19 + 200  # allocated once, exactly
    client.close()
    result = await store.try_sample("big", 250)
    assert result is not None
    np.testing.assert_array_equal(result.columns[("v",)], data[("v",)])


async def test_watch_is_woken_by_another_store(store: RedisStore, open_store: Any) -> None:
    other = await open_store()
    await store.create_table("t", config())
    watch = store.watch("t")
    assert not await watch.wait(0.05)
    start = time.monotonic()
    waiting = asyncio.create_task(watch.wait(5.0))
    await asyncio.sleep(0.05)
    await insert(other, "t", [1])
    assert await waiting
    assert time.monotonic() - start < 1.0


async def test_scripts_are_reloaded_after_script_flush(store: RedisStore, redis_url: str) -> None:
    await store.create_table("t", config())
    client = redis.Redis.from_url(redis_url)
    client.script_flush()
    client.close()
    assert await insert(store, "t", [1]) is not None


async def test_ping_and_close(redis_url: str) -> None:
    store = RedisStore(redis_url)
    await store.open()
    assert await store.ping()
    await store.close()
    down = RedisStore("redis://127.0.0.1:1/0")
    with pytest.raises(redis.exceptions.ConnectionError):
        await down.open()
    await down.close()


async def test_concurrent_stores_keep_counters_exact(store: RedisStore, open_store: Any) -> None:
    stores = [store, await open_store(), await open_store()]
    limiter = {
        "kind": "sample_to_insert_ratio",
        "samples_per_insert": 1.0,
        "min_size_to_sample": 10,
        "error_buffer": 50.0,
    }
    await store.create_table("t", config(max_size=200, rate_limiter=limiter, max_times_sampled=3))
    acked = {"inserts": 0, "samples": 0}
    draws: dict[int, list[int]] = {}  # key -> times_sampled of each of its draws

    async def inserter(s: RedisStore, k: int) -> None:
        for i in range(40):
            if await insert(s, "t", range(8 * i, 8 * i + 8)) is not None:
                acked["inserts"] += 8
            await asyncio.sleep(0)

    async def sampler(s: RedisStore) -> None:
        for _ in range(60):
            result = await s.try_sample("t", 5)
            if result is not None:
                acked["samples"] += 5
                for key, ts in zip(
                    result.keys.tolist(), result.times_sampled.tolist(), strict=True
                ):
                    draws.setdefault(key, []).append(ts)
            await asyncio.sleep(0)

    await asyncio.gather(*(inserter(s, k) for k, s in enumerate(stores)), *map(sampler, stores))
    counters = await store.counters("t")
    assert counters.inserts == acked["inserts"]
    assert counters.samples == acked["samples"]
    assert counters.size == counters.inserts - counters.deletes
    diff = counters.inserts - counters.samples
    assert -40 <= diff <= 60  # min_diff, max_diff = 10 -/+ 50
    assert acked["samples"] > 100
    for counts in draws.values():  # no lost update, nothing drawn after its removal (3rd draw)
        assert sorted(counts) == list(range(1, len(counts) + 1)) and len(counts) <= 3
