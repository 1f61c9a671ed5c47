"""Replay service processes on one Redis: kill -9 and restart, and two processes sharing tables."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import pytest

from shared.clients import ReplayClient, make_http_client
from shared.errors import RateLimited
from tests.support import ServiceProcess

pytestmark = [pytest.mark.redis, pytest.mark.e2e]


def batch(start: int, n: int) -> dict[str, np.ndarray]:
    x = np.arange(start, start + n, dtype=np.int64)
    return {"x": x, "obs": (x[:, None] * np.array([1.0, -2.0, 0.5])).astype(np.float32)}


def assert_intact(data: dict[str, np.ndarray]) -> None:
    x = np.asarray(data["x"])
    np.testing.assert_array_equal(data["obs"], (x[:, None] * np.array([1.0, -2.0, 0.5])))


@contextlib.asynccontextmanager
async def client(service: ServiceProcess) -> AsyncIterator[ReplayClient]:
    async with make_http_client(service.url) as http:
        yield ReplayClient(http, connect_retries=0)


def table(**overrides: Any) -> dict[str, Any]:
    return {
        "sampler": {"kind": "uniform"},
        "remover": {"kind": "fifo"},
        "max_size": 100_000,
        "rate_limiter": {"kind": "min_size", "min_size_to_sample": 1},
        **overrides,
    }


async def test_kill_9_and_restart_loses_no_acknowledged_item(redis_url: str) -> None:
    env = {"REDIS_URL": redis_url}
    acked_keys: list[int] = []
    acked = {"inserts": 0, "samples": 0}
    in_flight = {"inserts": 0, "samples": 0}
    first = ServiceProcess("replay", env).start()
    try:
        async with client(first) as replay:
            await replay.create_table("t", table())

            async def inserter(k: int) -> None:
                for i in range(10_000):
                    in_flight["inserts"] += 16
                    keys = await replay.insert("t", data=batch((k * 10_000 + i) * 16, 16))
                    in_flight["inserts"] -= 16
                    acked["inserts"] += 16
                    acked_keys.extend(keys)
                    if acked["inserts"] >= 1500:
                        enough.set()

            async def sampler() -> None:
                while True:
                    in_flight["samples"] += 8
                    await replay.sample("t", 8)
                    in_flight["samples"] -= 8
                    acked["samples"] += 8

            enough = asyncio.Event()
            tasks = [asyncio.create_task(f) for f in (inserter(0), inserter(1), sampler())]
            await asyncio.wait_for(enough.wait(), 60)
            first.kill()  # kill -9 with requests in flight
            results = await asyncio.gather(*tasks, return_exceptions=True)
            assert all(isinstance(r, Exception) for r in results)
    finally:
        first.stop()
    with ServiceProcess("replay", env) as second:
        async with client(second) as replay:
            info = await replay.info("t")
            assert (
                acked["inserts"] <= info["num_inserts"] <= acked["inserts"] + in_flight["inserts"]
            )
            assert (
                acked["samples"] <= info["num_samples"] <= acked["samples"] + in_flight["samples"]
            )
            assert info["size"] == info["num_inserts"] and info["num_deletes"] == 0
            result = await replay.update_priorities(
                "t", keys=acked_keys, priorities=[2.0] * len(acked_keys)
            )
            assert result["updated"] == len(acked_keys)
            assert_intact((await replay.sample("t", 2000)).data)
            keys = await replay.insert("t", data=batch(10**9, 4))  # and it goes on
            assert len(set(keys) & set(acked_keys)) == 0


async def test_two_processes_share_a_table(redis_url: str) -> None:
    env = {"REDIS_URL": redis_url}
    limiter = {
        "kind": "sample_to_insert_ratio",
        "samples_per_insert": 1.0,
        "min_size_to_sample": 20,
        "error_buffer": 200.0,  # min_diff -180, max_diff 220
    }
    with ServiceProcess("replay", env) as a, ServiceProcess("replay", env) as b:
        async with client(a) as ra, client(b) as rb:
            config = table(rate_limiter=limiter, max_size=300, max_times_sampled=2)
            await ra.create_table("t", config)
            await rb.create_table("t", config)  # the same config again: fine
            acked = {"inserts": 0, "samples": 0}
            draws: dict[int, list[int]] = {}
            deleted_at: dict[int, float] = {}  # key -> when its deletion was acknowledged
            sampled_at: list[tuple[float, list[int]]] = []  # (request start, keys)
            stop = time.monotonic() + 3.0

            async def inserter(replay: ReplayClient, k: int) -> None:
                i = 0
                while time.monotonic() < stop:
                    try:
                        await replay.insert(
                            "t", data=batch((k * 100_000 + i) * 8, 8), timeout_s=0.2
                        )
                        acked["inserts"] += 8
                    except RateLimited:
                        pass
                    i += 1

            async def sampler(replay: ReplayClient, delete: bool) -> None:
                while time.monotonic() < stop:
                    start = time.monotonic()
                    try:
                        result = await replay.sample("t", 6, timeout_s=0.2)
                    except RateLimited:
                        continue
                    acked["samples"] += 6
                    assert_intact(result.data)
                    keys = result.keys.astype(np.int64).tolist()
                    sampled_at.append((start, keys))
                    for key, ts in zip(keys, result.times_sampled.tolist(), strict=True):
                        draws.setdefault(key, []).append(ts)
                    if delete:
                        await replay.update_priorities("t", deletes=keys[:1])
                        deleted_at.setdefault(keys[0], time.monotonic())

            await asyncio.gather(
                inserter(ra, 0),
                inserter(rb, 1),
                inserter(ra, 2),
                sampler(ra, False),
                sampler(rb, True),
                sampler(rb, False),
                sampler(ra, True),
            )
            info = await ra.info("t")
            assert info == await rb.info("t")
            assert acked["samples"] > 200 and acked["inserts"] > 200
            assert info["num_inserts"] == acked["inserts"]
            assert info["num_samples"] == acked["samples"]
            assert info["size"] == info["num_inserts"] - info["num_deletes"]
            diff = info["num_inserts"] * 1.0 - info["num_samples"]
            assert -180 <= diff <= 220
            for counts in draws.values():  # no lost times_sampled update, no third draw
                assert sorted(counts) == list(range(1, len(counts) + 1)) and len(counts) <= 2
            for start, keys in sampled_at:  # nothing sampled after its deletion was acknowledged
                assert not any(deleted_at.get(k, np.inf) < start for k in keys)


async def test_a_sampler_on_one_process_is_woken_by_an_insert_through_the_other(
    redis_url: str,
) -> None:
    env = {"REDIS_URL": redis_url}
    with ServiceProcess("replay", env) as a, ServiceProcess("replay", env) as b:
        async with client(a) as ra, client(b) as rb:
            await ra.create_table("w", table())
            await rb.info("w")
            for attempt in range(3):
                waiting = asyncio.create_task(ra.sample("w", 1, timeout_s=20.0))
                await asyncio.sleep(0.5)  # the sampler is blocked in process A
                assert not waiting.done()
                await rb.insert("w", data=batch(attempt, 1))
                inserted = time.monotonic()
                result = await waiting
                latency = time.monotonic() - inserted
                assert result.data["x"].tolist() == [attempt]
                assert latency < 0.5, f"woken {latency:.3f} s after the insert"
                await rb.reset("w")
