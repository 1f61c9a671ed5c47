"""Table storage: the ``TableStore`` Protocol (base.py) and its memory and Redis backends."""

from __future__ import annotations

from services.replay.storage.base import TableStore
from services.replay.storage.memory import MemoryStore


def make_store(redis_url: str | None, *, seed: int | None = None) -> TableStore:
    """Redis when ``redis_url`` is set, else in this process's memory."""
    if redis_url:
        from services.replay.storage.redis_store import RedisStore

        return RedisStore(redis_url)
    return MemoryStore(seed=seed)
