"""Replay service benchmark: ``python -m bench.replay [--quick]`` (part of ``make bench``).

Measures, for the memory and the Redis backend of ``python -m services.replay`` (real processes,
loaded through ``shared.clients.ReplayClient`` from this process), insert and sample throughput of
CartPole transitions (batches of 256) and 64 KB items (batches of 16) with 1 and 4 concurrent
clients, each beside baselines measured in the same rounds:

- HTTP floor (``bench.floors``): the same FastAPI + uvicorn stack reading the same request bodies
  and answering with pre-built bytes of the size of the replay's answers;
- Redis floor: redis-py (hiredis) moving the same per-item payloads with MSET / MGET;

plus the bytes one stored CartPole transition costs (Redis ``used_memory``, replay process RSS)
and httpx's client against the aiohttp session that ``make_http_client`` makes.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import numpy as np
import uvloop
from rich.console import Console

from bench import report
from bench.floors import RedisFloor
from bench.harness import ROOT, ChildServer, Comparison, RedisServer, compare, rss_bytes
from bench.replay_items import Payload, cartpole, payloads, table_config
from bench.replay_tables import (
    HTTP_FLOOR,
    MEMORY,
    REDIS,
    REDIS_FLOOR,
    build_sections,
    docs_body,
    transport_verdict,
)
from shared import codec
from shared.clients import ReplayClient, make_http_client

MSGPACK = {"Content-Type": codec.CONTENT_TYPE, "Accept": codec.CONTENT_TYPE}
CLIENTS = (1, 4)


@dataclass
class Options:
    rounds: int
    duration_s: float
    memory_items: int
    backends: tuple[str, ...]
    command: str
    machine: str


class Bench:
    """The servers and clients of one run, and the scenarios run against them."""

    def __init__(self, options: Options, log_dir: Path) -> None:
        self.options = options
        self.log_dir = log_dir
        self.payloads = payloads()
        self.redis = RedisServer()
        self.floor = ChildServer("bench.floors", {}, log_dir=log_dir)
        self.replays: dict[str, ChildServer] = {}
        self.redis_floors: dict[tuple[str, str], RedisFloor] = {}
        self.reply_bytes: dict[tuple[str, str], int] = {}

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> None:
        self.redis.start()
        servers = [self.floor]
        for backend in self.options.backends:
            env = {"REDIS_URL": self.redis.url} if backend == REDIS else {}
            self.replays[backend] = ChildServer(
                "services.replay", env, log_dir=self.log_dir, unset=("REDIS_URL", "RLFLEET_TOKEN")
            )
            servers.append(self.replays[backend])
        for server in servers:
            server.launch()
        for server in servers:
            server.wait_ready()

    async def open_redis_floors(self) -> None:
        for p in self.payloads:
            for direction, ring in (("insert", p.insert_ring), ("sample", p.prefill)):
                floor = RedisFloor(
                    self.redis.url, prefix=f"floor:{p.key}:{direction}", ring_size=ring
                )
                self.redis_floors[p.key, direction] = floor

    async def close(self) -> None:
        for floor in self.redis_floors.values():
            await floor.aclose()

    @asynccontextmanager
    async def replay(self, backend: str) -> AsyncIterator[ReplayClient]:
        """A fresh client (and connection) for one phase: uvicorn closes connections idle for
        5 s, the very keep-alive time of the client's pool, so an old one may be closing."""
        async with make_http_client(self.replays[backend].url) as http:
            yield ReplayClient(http)

    async def _clients(
        self, stack: AsyncExitStack, n: int
    ) -> tuple[list[aiohttp.ClientSession], dict[str, list[ReplayClient]]]:
        """``n`` clients, each with its own connection, of the HTTP floor and of each backend."""
        floor = [
            await stack.enter_async_context(make_http_client(self.floor.url)) for _ in range(n)
        ]
        replays = {
            backend: [await stack.enter_async_context(self.replay(backend)) for _ in range(n)]
            for backend in self.replays
        }
        return floor, replays

    def stop(self) -> None:
        for server in [self.floor, *self.replays.values()]:
            server.stop()
        self.redis.stop()

    # -- setup -----------------------------------------------------------------------------------

    async def prepare(self) -> None:
        """Creates and pre-fills the tables and the Redis floor's keys; learns the answer sizes."""
        for p in self.payloads:
            for backend in self.replays:
                async with self.replay(backend) as replay:
                    await replay.create_table(p.table("insert"), table_config(p.insert_ring))
                    config = table_config(p.prefill, p.prefill)
                    await replay.create_table(p.table("sample"), config)
                    for table, size in (
                        (p.table("sample"), p.prefill),
                        (p.table("insert"), p.insert_ring),
                    ):
                        await _fill(replay, table, p, size)
            for direction in ("sample", "insert"):  # inserts then measure the steady state
                await self.redis_floors[p.key, direction].fill(p.item(0))
            (
                self.reply_bytes[p.key, "insert"],
                self.reply_bytes[p.key, "sample"],
            ) = await self._answer_sizes(p)

    async def _answer_sizes(self, p: Payload) -> tuple[int, int]:
        """Sizes of the replay's insert and sample answers (estimated in a floors-only run)."""
        if not self.replays:
            keys = list(range(2**40, 2**40 + p.batch))
            fake = {
                "keys": keys,
                "probabilities": [1.0] * p.batch,
                "priorities": [1.0] * p.batch,
                "times_sampled": [1] * p.batch,
                "table_size": p.prefill,
                "data": p.columns,
            }
            return len(codec.encode({"keys": keys})), len(codec.encode(fake))
        sizes = []
        for direction, body in (("insert", self.insert_body(p)), ("sample", self.sample_body(p))):
            async with self.replay(next(iter(self.replays))) as replay:
                answer = await replay.request(
                    "POST",
                    f"/tables/{p.table(direction)}/{direction}",
                    content=body,
                    headers=MSGPACK,
                )
            if answer.status_code != 200:
                raise RuntimeError(f"{direction} answered {answer.status_code}: {answer.text}")
            sizes.append(len(answer.content))
        return sizes[0], sizes[1]

    @staticmethod
    def insert_body(p: Payload) -> bytes:
        """The bytes ``ReplayClient.insert`` sends for one batch."""
        priorities = np.ones(p.batch, dtype=np.float64)
        return codec.encode({"columns": p.columns, "priorities": priorities, "timeout_ms": 5000})

    @staticmethod
    def sample_body(p: Payload) -> bytes:
        return codec.encode({"batch_size": p.batch, "timeout_ms": 5000})

    # -- memory per item -------------------------------------------------------------------------

    async def bytes_per_item(self, backend: str) -> float:
        """Stored bytes per CartPole transition: a table of ``memory_items`` items, filled."""
        n = self.options.memory_items
        if backend == REDIS:
            measure: Callable[[], int] = self.redis.used_memory
        else:
            pid = self.replays[backend].pid
            measure = lambda: rss_bytes(pid)  # noqa: E731
        rng, batch = np.random.default_rng(2), 5000
        chunks = [cartpole(batch, rng) for _ in range(4)]
        async with self.replay(backend) as replay:
            await replay.create_table("bench_warmup", table_config(1000))
            await replay.insert("bench_warmup", data=cartpole(500, rng))
            await replay.sample("bench_warmup", 100)
            await replay.reset("bench_warmup")
            before = measure()
            await replay.create_table("bench_memory", table_config(n))
            for i, start in enumerate(range(0, n, batch)):
                data = {k: v[: min(batch, n - start)] for k, v in chunks[i % len(chunks)].items()}
                await replay.insert("bench_memory", data=data, timeout_s=30.0)
            await asyncio.sleep(0.5)
            used = measure() - before
            await replay.reset("bench_memory")
        return used / n

    # -- throughput ------------------------------------------------------------------------------

    def variants(
        self,
        p: Payload,
        direction: str,
        floor_http: list[aiohttp.ClientSession],
        clients: dict[str, list[ReplayClient]],
    ) -> dict[str, Callable[[int], Any]]:
        batch, table = p.batch, p.table(direction)
        reply = f"reply/{self.reply_bytes[p.key, direction]}"
        body = self.insert_body(p) if direction == "insert" else self.sample_body(p)

        async def http_floor(i: int) -> int:
            async with floor_http[i].post(reply, data=body, headers=MSGPACK) as answer:
                answer.raise_for_status()
                await answer.read()
            return batch

        redis_floor = self.redis_floors[p.key, direction]
        items = [p.item(i) for i in range(batch)]

        async def redis_op(i: int) -> int:
            if direction == "insert":
                return await redis_floor.insert(items)
            return await redis_floor.sample(batch)

        out: dict[str, Callable[[int], Any]] = {HTTP_FLOOR: http_floor}
        for backend, replays in clients.items():
            out[backend] = _replay_op(replays, direction, table, p)
        out[REDIS_FLOOR] = redis_op
        return out

    async def throughput(self, p: Payload, direction: str, concurrency: int) -> Comparison:
        servers = {HTTP_FLOOR: [self.floor.pid], REDIS_FLOOR: [self.redis.pid]}
        for backend, server in self.replays.items():
            servers[backend] = [server.pid] + ([self.redis.pid] if backend == REDIS else [])
        async with AsyncExitStack() as stack:
            floor_http, clients = await self._clients(stack, concurrency)
            return await compare(
                self.variants(p, direction, floor_http, clients),
                concurrency=concurrency,
                rounds=self.options.rounds,
                duration_s=self.options.duration_s,
                servers=servers,
            )

    async def transports(self, concurrency: int) -> Comparison:
        """httpx's client against the clients' aiohttp session, small bodies to the floor's /echo."""
        body = codec.encode({"batch_size": 256, "timeout_ms": 5000})
        httpx_pool = [httpx.AsyncClient(base_url=self.floor.url) for _ in range(concurrency)]
        aiohttp_pool = [make_http_client(self.floor.url) for _ in range(concurrency)]

        async def httpx_post(i: int) -> int:
            (await httpx_pool[i].post("/echo", content=body, headers=MSGPACK)).raise_for_status()
            return 1

        async def aiohttp_post(i: int) -> int:
            async with aiohttp_pool[i].post("echo", data=body, headers=MSGPACK) as answer:
                answer.raise_for_status()
                await answer.read()
            return 1

        try:
            return await compare(
                {"httpx": httpx_post, "aiohttp": aiohttp_post},
                concurrency=concurrency,
                rounds=self.options.rounds,
                duration_s=self.options.duration_s,
                servers={"httpx": (self.floor.pid,), "aiohttp": (self.floor.pid,)},
            )
        finally:
            for client in httpx_pool:
                await client.aclose()
            for session in aiohttp_pool:
                await session.close()


async def _fill(replay: ReplayClient, table: str, p: Payload, size: int) -> None:
    """Inserts ``size`` items of ``p`` into ``table``, in requests of up to ~256 KB."""
    per_request = max(p.batch, 262_144 // p.item_bytes // p.batch * p.batch)
    repeats = per_request // p.batch
    columns = {k: np.concatenate([v] * repeats) for k, v in p.columns.items()}
    for start in range(0, size, per_request):
        n = min(per_request, size - start)
        data = {k: v[:n] for k, v in columns.items()}
        await replay.insert(table, data=data, timeout_s=30.0)


def _replay_op(clients: list[ReplayClient], direction: str, table: str, p: Payload):
    if direction == "insert":

        async def insert(i: int) -> int:
            return len(await clients[i].insert(table, data=p.columns))

        return insert

    async def sample(i: int) -> int:
        return len((await clients[i].sample(table, p.batch)).keys)

    return sample


@contextmanager
def phase(console: Console, what: str) -> Iterator[None]:
    start = time.perf_counter()
    with console.status(what):
        yield
    console.log(f"{what}: {time.perf_counter() - start:.1f} s")


async def run(
    options: Options, console: Console, log_dir: Path
) -> tuple[list[report.Section], dict[int, Comparison]]:
    bench = Bench(options, log_dir)
    try:
        with phase(console, "start redis-server, the HTTP floor and the replay service"):
            bench.start()
        await bench.open_redis_floors()
        memory: dict[str, float] = {}
        for backend in options.backends:
            with phase(console, f"bytes per item, {backend} backend"):
                memory[backend] = await bench.bytes_per_item(backend)
        with phase(console, "create and pre-fill the tables"):
            await bench.prepare()
        transport = {}
        for c in CLIENTS:
            with phase(console, f"client transports, {c} client(s)"):
                transport[c] = await bench.transports(c)
        results: dict[tuple[str, str, int], Comparison] = {}
        for p in bench.payloads:
            for direction in ("insert", "sample"):
                for c in CLIENTS:
                    with phase(console, f"{direction} {p.label}, {c} client(s)"):
                        results[p.key, direction, c] = await bench.throughput(p, direction, c)
        await bench.close()
        return build_sections(bench.payloads, results, memory, transport, options), transport
    finally:
        bench.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.replay", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer, shorter rounds (~40 s)")
    parser.add_argument("--rounds", type=int, help="interleaved rounds per scenario")
    parser.add_argument("--duration", type=float, help="seconds per round")
    parser.add_argument("--memory-items", type=int, help="items in the bytes-per-item table")
    parser.add_argument(
        "--floors-only", action="store_true", help="measure the baselines only (no replay service)"
    )
    parser.add_argument("--backends", default="memory,redis", help="replay backends to measure")
    parser.add_argument(
        "--docs",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="write docs/benchmarks.md (default: yes, except with --quick or --floors-only)",
    )
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target fails")
    args = parser.parse_args(argv)
    backends = () if args.floors_only else tuple(b.strip() for b in args.backends.split(",") if b)
    unknown = set(backends) - {MEMORY, REDIS}
    if unknown:
        parser.error(f"unknown backends {sorted(unknown)}: use memory and/or redis")
    command = " ".join(["python -m bench.replay", *(argv if argv is not None else sys.argv[1:])])
    options = Options(
        rounds=args.rounds or (3 if args.quick else 5),
        duration_s=args.duration or (0.25 if args.quick else 0.5),
        memory_items=args.memory_items or (100_000 if args.quick else 300_000),
        backends=backends,
        command=command.strip(),
        machine=report.machine(),
    )
    console = Console(width=None if sys.stdout.isatty() else 160)
    log_dir = ROOT / "runs" / "bench"
    log_dir.mkdir(parents=True, exist_ok=True)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        sections, transport = runner.run(run(options, console, log_dir))
    report.print_sections(console, sections)
    console.print(transport_verdict(transport))
    write_docs = args.docs if args.docs is not None else not (args.quick or args.floors_only)
    if write_docs:
        path = ROOT / "docs" / "benchmarks.md"
        report.write_section(path, "replay", docs_body(sections, options, transport))
        console.print(f"wrote the Replay section of {path.relative_to(ROOT)}")
    failed = sum(cell.endswith("FAIL") for s in sections for row in s.rows for cell in row)
    console.print(f"{failed} target(s) missed" if failed else "all measured targets met")
    return 1 if args.strict and failed else 0


if __name__ == "__main__":
    sys.exit(main())
