"""InsertWriter against the real replay app (uvicorn on a loopback socket, same event loop)."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from services.actor.writer import InsertWriter, WriterClosed
from services.replay.app import create_app
from services.replay.settings import Settings
from shared.clients import ReplayClient, make_http_client
from tests.actor.support import serve, wait_for
from tests.support import free_port

SIGNATURE = {
    "observation": {"dtype": "<f4", "shape": [2]},
    "action": {"dtype": "<i4", "shape": []},
}
UNLIMITED = {"max_size": 1000, "rate_limiter": {"kind": "min_size", "min_size_to_sample": 1}}
QUEUE_OF_4 = {
    "sampler": {"kind": "fifo"},
    "remover": {"kind": "fifo"},
    "max_size": 4,
    "max_times_sampled": 1,
    "rate_limiter": {"kind": "queue", "size": 4},
}


def items(n: int, start: int = 0) -> dict[str, np.ndarray]:
    ids = np.arange(start, start + n)
    return {
        "observation": np.stack([ids, ids], axis=1).astype(np.float32),
        "action": ids.astype(np.int32),
    }


@pytest.fixture
async def replay_url():
    async with serve(create_app(Settings(seed=0)), lifespan="on") as url:
        yield url


def make_writer(replay: ReplayClient, table_config, **kwargs) -> InsertWriter:
    options = {"max_pending": 2, "concurrency": 2, "timeout_s": 0.2} | kwargs
    return InsertWriter(replay, "t", table_config=table_config, **options)


async def test_creates_the_missing_table_and_stores_the_requests(replay_url):
    config = {**QUEUE_OF_4, "max_size": 20, "rate_limiter": {"kind": "queue", "size": 20}}
    config["signature"] = SIGNATURE
    async with make_http_client(replay_url) as http:
        replay = ReplayClient(http)
        writer = make_writer(replay, config)
        writer.start()
        for i in range(5):
            assert await writer.wait_for_room(5.0)
            writer.put(items(3, start=3 * i))
        await writer.drain(5.0)
        info = await replay.info("t")
        assert info["num_inserts"] == 15 == writer.inserted_items
        assert writer.pending_items == 0 and writer.last_error is None
        sample = await replay.sample("t", 15)
        assert sorted(sample.data["action"].tolist()) == list(range(15))  # each once


async def test_429_is_back_pressure_that_holds_acting(replay_url):
    async with make_http_client(replay_url) as http:
        replay = ReplayClient(http)
        await replay.create_table("t", QUEUE_OF_4)
        writer = make_writer(replay, None, max_pending=2, concurrency=1)
        writer.start()
        writer.put(items(2))
        writer.put(items(2, start=2))
        await wait_for(lambda: writer.inserted_items == 4)
        # The table is full: the next request is retried (429s), the one after it waits in the
        # writer's queue, and the writer is full: acting waits for room.
        writer.put(items(2, start=4))
        writer.put(items(2, start=6))
        assert writer.full
        blocked = asyncio.create_task(writer.wait_for_room(10.0))
        await wait_for(lambda: writer.rate_limited >= 2)
        assert not blocked.done() and not await writer.wait_for_room(0.05)
        assert writer.failure is None
        taken = []
        for _ in range(2):  # sampling makes room: the waiting ends
            taken += (await replay.sample("t", 2, timeout_s=5)).data["action"].tolist()
        assert await asyncio.wait_for(blocked, 5)
        writer.put(items(2, start=8))
        for _ in range(3):  # everything goes through, in order
            taken += (await replay.sample("t", 2, timeout_s=5)).data["action"].tolist()
        await writer.drain(5.0)
        assert taken == list(range(10))
        assert writer.inserted_items == 10 and writer.dropped_items == 0


async def test_retries_while_replay_is_down():
    port = free_port()
    async with make_http_client(f"http://127.0.0.1:{port}") as http:
        replay = ReplayClient(http, connect_retries=0)
        writer = make_writer(replay, UNLIMITED)
        writer.start()
        writer.put(items(4))
        await wait_for(lambda: writer.retries >= 2)
        assert writer.pending_items == 4 and writer.last_error is not None
        async with serve(create_app(Settings()), port=port, lifespan="on"):
            await wait_for(lambda: writer.inserted_items == 4)
            assert (await replay.info("t"))["num_inserts"] == 4
            assert writer.last_error is None and writer.retries >= 2
            await writer.drain(1.0)


async def test_a_refused_request_fails_the_writer_and_stops_acting(replay_url):
    async with make_http_client(replay_url) as http:
        replay = ReplayClient(http)
        await replay.create_table("t", {**UNLIMITED, "signature": SIGNATURE})
        writer = make_writer(replay, None, max_pending=1, concurrency=1)
        writer.start()
        bad = {"observation": np.zeros((2, 3), np.float32), "action": np.zeros(2, np.int32)}
        writer.put(bad)
        await wait_for(lambda: writer.failure is not None)
        with pytest.raises(WriterClosed, match="failed"):
            await writer.wait_for_room(1.0)
        with pytest.raises(WriterClosed, match="failed"):
            writer.put(items(2))
        await writer.aclose()
        assert (await replay.info("t"))["num_inserts"] == 0
