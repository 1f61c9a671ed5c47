"""Baselines the replay benchmark divides by: an HTTP floor and a Redis floor.

HTTP floor: the replay service's own stack (FastAPI on uvicorn, one process, served by
``uvicorn.run`` exactly like ``python -m services.replay``) with routes that do nothing but read the
request body and answer with bytes built once. Run it with ``python -m bench.floors`` (``HOST``,
``PORT`` from the environment, like the services). Whatever the replay service does beyond moving
bytes over this stack is what the benchmark charges it for.

Redis floor: redis-py (hiredis parser, asyncio) moving the same per-item payloads, one key per item,
one command per batch: ``MSET`` (insert) and ``MGET`` of random keys (sample). (A pipeline of one
``SET`` per item is 8x slower than ``MSET`` for CartPole-sized items in redis-py, so it would be no
floor.) A Redis-backed table that stores and fetches each batch's bytes cannot beat this by much.
"""

from __future__ import annotations

import os
import random

import redis.asyncio as aioredis
import uvicorn
from fastapi import FastAPI, Request, Response

from shared.codec import CONTENT_TYPE


def create_app() -> FastAPI:
    """The HTTP floor: ``/echo`` returns the body; ``/reply/{nbytes}`` reads it and returns
    ``nbytes`` pre-built bytes (the size of the replay's insert or sample answer)."""
    app = FastAPI(title="rlfleet HTTP floor", docs_url=None, redoc_url=None, openapi_url=None)
    blobs: dict[int, bytes] = {}

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/echo")
    async def echo(request: Request) -> Response:
        return Response(await request.body(), media_type=CONTENT_TYPE)

    @app.post("/reply/{nbytes}")
    async def reply(nbytes: int, request: Request) -> Response:
        await request.body()
        blob = blobs.get(nbytes)
        if blob is None:
            blob = blobs.setdefault(nbytes, os.urandom(nbytes))
        return Response(blob, media_type=CONTENT_TYPE)

    return app


class RedisFloor:
    """MSET / MGET of raw item payloads on a ring of ``ring_size`` keys."""

    def __init__(self, url: str, *, prefix: str, ring_size: int) -> None:
        self._redis = aioredis.Redis.from_url(url, max_connections=16)
        self._prefix = prefix
        self._ring_size = ring_size
        self._next = 0

    def _key(self, slot: int) -> str:
        return f"{self._prefix}:{slot}"

    async def insert(self, items: list[bytes]) -> int:
        """Stores ``items`` under the next ring slots in one round trip; returns how many."""
        start, self._next = self._next, self._next + len(items)
        await self._redis.mset(
            {self._key((start + i) % self._ring_size): item for i, item in enumerate(items)}
        )
        return len(items)

    async def fill(self, item: bytes, *, batch: int = 1000) -> None:
        """Writes ``item`` into every slot of the ring."""
        for start in range(0, self._ring_size, batch):
            await self.insert([item] * min(batch, self._ring_size - start))

    async def sample(self, n: int) -> int:
        """Reads ``n`` random slots in one ``MGET``; returns how many came back."""
        keys = [self._key(random.randrange(self._ring_size)) for _ in range(n)]
        values = await self._redis.mget(keys)
        return sum(1 for v in values if v is not None)

    async def clear(self) -> None:
        keys = [self._key(slot) for slot in range(self._ring_size)]
        for start in range(0, len(keys), 1000):
            await self._redis.unlink(*keys[start : start + 1000])

    async def aclose(self) -> None:
        await self._redis.aclose()


def main() -> None:
    # The same server settings as ``python -m services.replay``.
    uvicorn.run(
        create_app(),
        host=os.environ.get("HOST", "127.0.0.1"),
        port=int(os.environ.get("PORT", "8099")),
        loop="uvloop",
        http="httptools",
        log_level=os.environ.get("LOG_LEVEL", "warning").lower(),
        access_log=False,
        timeout_graceful_shutdown=5,
    )


if __name__ == "__main__":
    main()
