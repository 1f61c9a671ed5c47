"""Fixtures for the Redis backend's tests: stores opened on the session's real redis-server."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import numpy as np
import pytest

from services.replay.config import TableConfig
from services.replay.storage.redis_store import RedisStore

OpenStore = Callable[..., RedisStore]


@pytest.fixture
async def open_store(redis_url: str) -> AsyncIterator[Callable[..., Any]]:
    """``await open_store(seed=...)``: another RedisStore on the test's database, closed after."""
    stores: list[RedisStore] = []

    async def make(**kwargs: Any) -> RedisStore:
        store = RedisStore(redis_url, **kwargs)
        await store.open()
        stores.append(store)
        return store

    yield make
    for store in stores:
        await store.close()


@pytest.fixture
async def store(open_store: Callable[..., Any]) -> RedisStore:
    return await open_store(seed=7)


def config(**overrides: Any) -> TableConfig:
    fields: dict[str, Any] = {"max_size": 1000, **overrides}
    for role in ("sampler", "remover"):
        if isinstance(fields.get(role), str):
            fields[role] = {"kind": fields[role]}
    return TableConfig.model_validate(fields)


def columns(xs: Any) -> dict[tuple[str | int, ...], np.ndarray]:
    """Items ``{"x": i64, "obs": f32[3] = (x, 2x, 3x)}`` for the ints ``xs``."""
    x = np.asarray(list(xs), np.int64)
    obs = (x[:, None] * np.array([1, 2, 3])).astype(np.float32)
    return {("obs",): obs, ("x",): x}


TEMPLATE = {"obs": {"dtype": "<f4", "shape": [3]}, "x": {"dtype": "<i8", "shape": []}}


async def insert(store: RedisStore, name: str, xs: Any, priorities: Any = None) -> list[int] | None:
    cols = columns(xs)
    n = len(cols[("x",)])
    p = np.ones(n) if priorities is None else np.asarray(priorities, np.float64)
    return await store.try_insert(name, cols, p, TEMPLATE)
