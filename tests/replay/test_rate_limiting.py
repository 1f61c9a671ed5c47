"""The rate limiter: exact boundaries, long-poll wake-ups, and the diff invariant under load."""

from __future__ import annotations

import asyncio
import time

import pytest

from shared.clients import ReplayClient
from shared.errors import InvalidRequest, RateLimited
from tests.replay.util import items, state, table

# spi 2, min_size 3, min_diff -4, max_diff 10:
#   insert n  when inserts + n - deletes <= 3  or  (inserts + n) * 2 - samples <= 10
#   sample n  when inserts - deletes >= 3      and  inserts * 2 - samples - n >= -4
RATIO = {
    "kind": "sample_to_insert_ratio",
    "samples_per_insert": 2.0,
    "min_size_to_sample": 3,
    "error_buffer": [-4.0, 10.0],
}


async def refused(call) -> None:
    with pytest.raises(RateLimited) as excinfo:
        await call
    assert excinfo.value.retry_after is not None


async def test_admission_at_the_exact_boundaries(replay: ReplayClient) -> None:
    await replay.create_table("t", table(rate_limiter=RATIO))
    info = (await replay.info("t"))["rate_limiter"]
    assert (info["min_diff"], info["max_diff"]) == (-4.0, 10.0)
    await refused(replay.insert("t", data=items(range(6)), timeout_s=0))  # 12 > 10
    with pytest.raises(InvalidRequest):  # min(0, -4) + 8 * 2 > 10: never
        await replay.insert("t", data=items(range(8)), timeout_s=0)
    assert await state(replay, "t") == (0, 0, 0, 0)
    await replay.insert("t", data=items(range(2)), timeout_s=0)
    await refused(replay.sample("t", 1, timeout_s=0))  # size 2 < min_size 3
    await replay.insert("t", data=items(range(2, 5)), timeout_s=0)  # 5 * 2 = 10 <= 10
    await refused(replay.insert("t", data=items([5]), timeout_s=0))  # 12 > 10
    with pytest.raises(InvalidRequest):  # more than max_diff - min_diff = 14 at once: never
        await replay.sample("t", 15, timeout_s=0)
    await replay.sample("t", 13, timeout_s=0)  # diff 10 - 13 = -3 >= -4
    await refused(replay.sample("t", 2, timeout_s=0))  # -3 - 2 < -4
    await replay.sample("t", 1, timeout_s=0)  # exactly -4
    await refused(replay.sample("t", 1, timeout_s=0))
    await replay.insert("t", data=items(range(5, 12)), timeout_s=0)  # 24 - 14 = 10 <= 10
    await refused(replay.insert("t", data=items([12]), timeout_s=0))
    assert await state(replay, "t") == (12, 12, 14, 0)
    info = (await replay.info("t"))["rate_limiter"]
    assert (info["inserts"], info["samples"], info["deletes"]) == (12, 14, 0)


async def test_min_size_limiter_has_no_upper_bound(replay: ReplayClient) -> None:
    await replay.create_table(
        "t", table(rate_limiter={"kind": "min_size", "min_size_to_sample": 4})
    )
    info = (await replay.info("t"))["rate_limiter"]
    assert info["min_diff"] is None and info["max_diff"] is None  # -inf and inf in JSON
    await replay.insert("t", data=items(range(3)), timeout_s=0)
    await refused(replay.sample("t", 1, timeout_s=0))
    await replay.insert("t", data=items([3]), timeout_s=0)
    assert len((await replay.sample("t", 100, timeout_s=0)).keys) == 100


async def wait_for_waiting(client: ReplayClient, name: str, field: str) -> None:
    deadline = time.monotonic() + 5
    while (await client.info(name))["rate_limiter"][field] < 1:
        assert time.monotonic() < deadline, f"nothing became {field}"
        await asyncio.sleep(0.01)


async def test_blocked_sample_is_released_by_an_insert(replay: ReplayClient) -> None:
    await replay.create_table("t", table())
    started = time.monotonic()
    sample = asyncio.create_task(replay.sample("t", 2, timeout_s=20))
    await wait_for_waiting(replay, "t", "waiting_samples")
    await replay.insert("t", data=items([42]))
    batch = await asyncio.wait_for(sample, 5)
    assert batch.data["x"].tolist() == [42, 42]
    assert time.monotonic() - started < 5
    assert (await replay.info("t"))["rate_limiter"]["waiting_samples"] == 0


async def test_blocked_insert_is_released_by_a_sample(replay: ReplayClient) -> None:
    queue = {"kind": "queue", "size": 2}
    await replay.create_table(
        "q",
        table(
            sampler={"kind": "fifo"},
            remover={"kind": "fifo"},
            max_times_sampled=1,
            max_size=2,
            rate_limiter=queue,
        ),
    )
    await replay.insert("q", data=items([0, 1]))
    insert = asyncio.create_task(replay.insert("q", data=items([2]), timeout_s=20))
    await wait_for_waiting(replay, "q", "waiting_inserts")
    assert (await replay.sample("q", 1)).data["x"].tolist() == [0]
    await asyncio.wait_for(insert, 5)
    assert (await replay.sample("q", 2)).data["x"].tolist() == [1, 2]


async def test_timeout_stores_and_counts_nothing(replay: ReplayClient) -> None:
    await replay.create_table(
        "t", table(rate_limiter={"kind": "min_size", "min_size_to_sample": 5})
    )
    await replay.insert("t", data=items(range(2)))
    started = time.monotonic()
    await refused(replay.sample("t", 1, timeout_s=0.3))
    assert 0.25 < time.monotonic() - started < 3
    assert await state(replay, "t") == (2, 2, 0, 0)
    response = await replay.request(
        "POST",
        "/tables/t/sample",
        content=b"\x82\xaabatch_size\x01\xaatimeout_ms\x00",
        headers={"Content-Type": "application/msgpack"},
    )
    assert response.status_code == 429 and int(response.headers["Retry-After"]) >= 1
    assert "detail" in response.json()


async def test_concurrent_inserts_and_samples_keep_diff_in_bounds(replay: ReplayClient) -> None:
    limiter = {
        "kind": "sample_to_insert_ratio",
        "samples_per_insert": 1.5,
        "min_size_to_sample": 8,
        "error_buffer": 12.0,
    }
    await replay.create_table("t", table(rate_limiter=limiter, max_size=64))
    info = (await replay.info("t"))["rate_limiter"]
    min_diff, max_diff, spi = info["min_diff"], info["max_diff"], 1.5
    stop = asyncio.Event()
    done = {"insert": 0, "sample": 0}

    async def inserter(i: int) -> None:
        while not stop.is_set():
            try:
                await replay.insert("t", data=items([i] * 3), timeout_s=0.2)
                done["insert"] += 1
            except RateLimited:
                pass

    async def sampler() -> None:
        while not stop.is_set():
            try:
                await replay.sample("t", 4, timeout_s=0.2)
                done["sample"] += 1
            except RateLimited:
                pass

    workers = [asyncio.create_task(inserter(i)) for i in range(3)]
    workers += [asyncio.create_task(sampler()) for _ in range(3)]
    checks = 0
    deadline = time.monotonic() + 2.0
    try:
        while time.monotonic() < deadline:
            rl = (await replay.info("t"))["rate_limiter"]
            diff = rl["inserts"] * spi - rl["samples"]
            assert min_diff <= diff <= max_diff, rl
            checks += 1
    finally:
        stop.set()
        await asyncio.gather(*workers)
    assert done["insert"] > 10 and done["sample"] > 10 and checks > 10
    rl = (await replay.info("t"))["rate_limiter"]
    assert min_diff <= rl["inserts"] * spi - rl["samples"] <= max_diff
    assert rl["waiting_inserts"] == rl["waiting_samples"] == 0
