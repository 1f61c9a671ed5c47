"""Where a replay request's CPU time goes, stage by stage: ``python -m bench.replay_stages``.

A profiling aid beside ``bench.replay`` (which measures the HTTP stack's own cost, the HTTP floor).
In one process, with the service's own objects (``create_app(settings)`` run through its lifespan,
so the memory store, or Redis when ``--redis``), it times each stage of an insert and a sample of
the benchmark's payloads, as CPU time per request (best of three runs, so other load on the
machine counts little):

- client: ``ReplayClient.insert`` / ``.sample`` against a canned answer (no network): the body
  encode or answer decode and the client's own work; and ``codec.encode`` / ``codec.decode`` alone;
- server: ``codec.decode`` of the request body, ``Tables.insert`` / ``Tables.sample`` (validation,
  rate limiter, store; with Redis, the replay process's side of the round trip), the Lua script's
  time inside redis-server (``INFO commandstats``), and ``codec.encode`` of the answer.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np
import redis
from rich.console import Console
from rich.table import Table

from bench.floors import create_app as create_floor_app
from bench.harness import RedisServer
from bench.replay_items import Payload, payloads, table_config
from services.replay.app import create_app
from services.replay.config import TableConfig
from services.replay.settings import Settings
from shared import codec
from shared.clients import ReplayClient, Reply


async def cpu_us(fn: Callable[[], Awaitable[Any]], n: int) -> float:
    """CPU microseconds per call of ``fn``: the best of three runs of ``n`` calls."""
    best = float("inf")
    for _ in range(3):
        start = time.process_time()
        for _ in range(n):
            await fn()
        best = min(best, time.process_time() - start)
    return best / n * 1e6


async def asgi_post(app: Any, path: str, body: bytes) -> bytes:
    """One POST straight into an ASGI app (no socket, no HTTP parsing); returns the answer body."""
    headers = [
        (b"host", b"bench"),
        (b"content-type", codec.CONTENT_TYPE.encode()),
        (b"accept", codec.CONTENT_TYPE.encode()),
        (b"content-length", str(len(body)).encode()),
    ]
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
    }
    messages = [{"type": "http.request", "body": body, "more_body": False}]
    chunks: list[bytes] = []

    async def receive() -> dict[str, Any]:
        return messages.pop() if messages else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start" and message["status"] != 200:
            raise RuntimeError(f"{path} answered {message['status']}")
        if message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    await app(scope, receive, send)
    return b"".join(chunks)


class _Canned(ReplayClient):
    """A ReplayClient whose every request gets one fixed answer at once, with no network."""

    def __init__(self, answer: bytes) -> None:
        self._answer = Reply(200, {}, answer)

    async def request(self, *args: Any, **kwargs: Any) -> Reply:
        return self._answer


def canned(answer: bytes) -> ReplayClient:
    """A ReplayClient that only encodes requests and decodes ``answer`` (the client's own work)."""
    return _Canned(answer)


async def stages(p: Payload, redis_url: str | None, n: int) -> dict[str, dict[str, float | None]]:
    """``{direction: {stage: µs per request}}`` for payload ``p``."""
    app = create_app(Settings(redis_url=redis_url, log_level="warning"))
    stats = redis.Redis.from_url(redis_url) if redis_url else None
    out: dict[str, dict[str, float | None]] = {}
    async with app.router.lifespan_context(app):
        tables = app.state.tables
        insert_table, sample_table = p.table("insert"), p.table("sample")
        await tables.create(insert_table, TableConfig.model_validate(table_config(p.insert_ring)))
        await tables.create(
            sample_table, TableConfig.model_validate(table_config(p.prefill, p.prefill))
        )
        body = {"columns": p.columns, "priorities": np.ones(p.batch), "timeout_ms": 5000}
        raw = codec.encode(body)
        decoded = codec.decode(raw)
        for _ in range(-(-p.insert_ring // p.batch)):  # full: inserts also evict (steady state)
            await tables.insert(insert_table, decoded)
        for _ in range(-(-p.prefill // p.batch)):
            await tables.insert(sample_table, decoded)
        request = {"batch_size": p.batch, "timeout_ms": 5000}
        keys_answer = codec.encode({"keys": await tables.insert(insert_table, decoded)})
        sample_answer = await tables.sample(sample_table, request)
        sample_raw = codec.encode(sample_answer)

        async def lua_us(fn: Callable[[], Awaitable[Any]]) -> float | None:
            if stats is None:
                return None
            stats.config_resetstat()
            for _ in range(n):
                await fn()
            return float(stats.info("commandstats")["cmdstat_evalsha"]["usec_per_call"])

        async def encode(x: Any) -> bytes:
            return codec.encode(x)

        async def decode(x: bytes) -> Any:
            return codec.decode(x)

        inserting = canned(keys_answer)
        sampling = canned(sample_raw)
        floor = create_floor_app()
        request_raw = codec.encode(request)
        out["insert"] = {
            "client: ReplayClient.insert, canned answer": await cpu_us(
                lambda: inserting.insert(insert_table, data=p.columns), n
            ),
            "client: codec.encode of the body": await cpu_us(lambda: encode(body), n),
            "server: codec.decode of the body": await cpu_us(lambda: decode(raw), n),
            "server: Tables.insert (checks, limiter, store)": await cpu_us(
                lambda: tables.insert(insert_table, decoded), n
            ),
            "redis-server: Lua script": await lua_us(lambda: tables.insert(insert_table, decoded)),
            "server: codec.encode of the answer": await cpu_us(
                lambda: encode({"keys": list(range(p.batch))}), n
            ),
            "server: the whole replay app (ASGI call)": await cpu_us(
                lambda: asgi_post(app, f"/tables/{insert_table}/insert", raw), n
            ),
            "server: the HTTP floor app (ASGI call)": await cpu_us(
                lambda: asgi_post(floor, f"/reply/{len(keys_answer)}", raw), n
            ),
        }
        out["sample"] = {
            "client: ReplayClient.sample, canned answer": await cpu_us(
                lambda: sampling.sample(sample_table, p.batch), n
            ),
            "client: codec.decode of the answer": await cpu_us(lambda: decode(sample_raw), n),
            "server: codec.decode of the body": await cpu_us(lambda: decode(request_raw), n),
            "server: Tables.sample (checks, limiter, store)": await cpu_us(
                lambda: tables.sample(sample_table, request), n
            ),
            "redis-server: Lua script": await lua_us(lambda: tables.sample(sample_table, request)),
            "server: codec.encode of the answer": await cpu_us(lambda: encode(sample_answer), n),
            "server: the whole replay app (ASGI call)": await cpu_us(
                lambda: asgi_post(app, f"/tables/{sample_table}/sample", request_raw), n
            ),
            "server: the HTTP floor app (ASGI call)": await cpu_us(
                lambda: asgi_post(floor, f"/reply/{len(sample_raw)}", request_raw), n
            ),
        }
    if stats is not None:
        stats.close()
    return out


async def run(backends: list[str], n: int) -> list[Table]:
    server = RedisServer().start() if "redis" in backends else None
    try:
        figures: dict[tuple[str, str], dict[str, dict[str, float | None]]] = {}
        for p in payloads():
            for backend in backends:
                url = server.url if server is not None and backend == "redis" else None
                if server is not None:
                    redis.Redis.from_url(server.url).flushall()
                for direction, row in (await stages(p, url, n)).items():
                    figures.setdefault((p.label, direction), {})[backend] = row
    finally:
        if server is not None:
            server.stop()
    out = []
    for (label, direction), by_backend in figures.items():
        table = Table(title=f"{direction} {label}: CPU µs per request", title_justify="left")
        table.add_column("stage")
        for backend in backends:
            table.add_column(backend, justify="right")
        for stage in next(iter(by_backend.values())):
            values = [by_backend[b][stage] for b in backends]
            table.add_row(stage, *("-" if v is None else f"{v:.0f}" for v in values))
        out.append(table)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.replay_stages", description=__doc__)
    parser.add_argument("--backends", default="memory,redis")
    parser.add_argument("-n", type=int, default=50, help="requests per timed run")
    args = parser.parse_args(argv)
    console = Console()
    for table in asyncio.run(run(args.backends.split(","), args.n)):
        console.print(table)


if __name__ == "__main__":
    main()
