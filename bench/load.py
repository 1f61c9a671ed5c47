"""``python -m bench.load``: 64 concurrent writers, samplers and ``/params`` pollers on one replay
(tables in Redis) and one learner, for a bounded time.

    python -m bench.load                  # 30 s: 64 writers, 4 samplers, 8 pollers
    python -m bench.load --seconds 60 --writers 64

Of the 64 writers, 8 write into the learner's own table, whose samples-per-insert rate limiter
answers 429 once they run ahead of the learner (back-pressure, the only error expected), and the
others into a table with no rate limit (a FIFO ring of 100k items), which the samplers sample.
Each request carries 64 CartPole transitions. The pollers ask ``GET /params`` with the ETag of
what they hold, as actors do. Printed: requests, p50/p99 latency, answers by status, the resident
memory of redis-server, the replay and the learner over time (it should stay flat), and every
error that was not a 429.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import datetime
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.chaos.fleet import Plan, Supervisor, build, service_url
from bench.chaos.network import Network
from services.launcher.processes import default_jax_cache_dir
from shared.clients import LearnerClient, ReplayClient, make_http_client
from shared.errors import RateLimited, RlfleetError

FREE_TABLE = "load_free"
ITEMS_PER_INSERT = 64


def columns(signature: dict[str, Any], n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    return {
        name: rng.standard_normal((n, *leaf["shape"])).astype(leaf["dtype"])
        for name, leaf in signature.items()
    }


class Stats:
    """Latencies and outcomes per kind of request."""

    def __init__(self) -> None:
        self.latency: dict[str, list[float]] = collections.defaultdict(list)
        self.outcomes: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)

    async def timed(self, kind: str, call: Any) -> None:
        start = time.perf_counter()
        try:
            result = await call
            outcome = result if isinstance(result, str) else "200"  # "304" from the pollers
        except RateLimited:
            outcome = "429"
        except Exception as e:  # any other answer or failure is counted, printed, and fails the run
            outcome = f"{type(e).__name__}: {e}"[:120]
        self.latency[kind].append(time.perf_counter() - start)
        self.outcomes[kind][outcome] += 1


async def _loop(deadline: float, body: Any) -> None:
    while time.monotonic() < deadline:
        await body()


async def load(args: argparse.Namespace) -> dict[str, Any]:
    network = Network(isolated=False)
    run_dir = Path(tempfile.mkdtemp(prefix="rlfleet-load-"))
    plan = Plan(
        run_dir=run_dir,
        actors=0,
        evaluator=False,
        relayed=None,
        jax_cache_dir=default_jax_cache_dir(),
        token="load-token",
    )
    procs, _ = build(plan, network)
    supervisor = Supervisor(network, procs)
    supervisor.start()
    replay_http = make_http_client(service_url(network, supervisor["replay"]), token=plan.token)
    learner_http = make_http_client(service_url(network, supervisor["learner"]), token=plan.token)
    replay, learner = ReplayClient(replay_http), LearnerClient(learner_http)
    stats = Stats()
    rss: list[tuple[float, dict[str, int | None]]] = []
    try:
        config = await _wait_for_learner(learner)
        table, body = next(iter(config["tables"].items()))
        signature = body["signature"]
        free = {
            "sampler": {"kind": "uniform"},
            "remover": {"kind": "fifo"},
            "max_size": 100_000,
            "max_times_sampled": 0,
            "rate_limiter": {"kind": "min_size", "min_size_to_sample": 1},
            "signature": signature,
        }
        await replay.create_table(FREE_TABLE, free)
        rng = np.random.default_rng(0)
        batch = columns(signature, ITEMS_PER_INSERT, rng)
        await replay.insert(FREE_TABLE, data=batch)
        versions: dict[int, int | None] = {}

        async def write(into: str) -> None:
            await stats.timed(f"insert {into}", replay.insert(into, data=batch, timeout_s=0.1))

        async def sample() -> None:
            await stats.timed("sample 128", replay.sample(FREE_TABLE, 128, timeout_s=0.1))

        async def poll(i: int) -> None:
            async def get() -> str:
                got = await learner.params(if_newer_than=versions.get(i), timeout_s=5.0)
                if got is None:
                    return "304"
                versions[i] = got.version
                return "200"

            await stats.timed("GET /params", get())
            await asyncio.sleep(0.05)

        started = time.monotonic()
        deadline = started + args.seconds
        tasks = [
            asyncio.create_task(_loop(deadline, lambda: write(table)))
            for _ in range(args.rate_limited_writers)
        ]
        tasks += [
            asyncio.create_task(_loop(deadline, lambda: write(FREE_TABLE)))
            for _ in range(args.writers - args.rate_limited_writers)
        ]
        tasks += [asyncio.create_task(_loop(deadline, sample)) for _ in range(args.samplers)]
        tasks += [
            asyncio.create_task(_loop(deadline, lambda i=i: poll(i))) for i in range(args.pollers)
        ]
        while time.monotonic() < deadline:
            rss.append(
                (
                    time.monotonic() - started,
                    {n: p.rss_bytes() for n, p in supervisor.procs.items()},
                )
            )
            await asyncio.sleep(1.0)
        await asyncio.gather(*tasks)
        rss.append(
            (time.monotonic() - started, {n: p.rss_bytes() for n, p in supervisor.procs.items()})
        )
        wall = time.monotonic() - started
        return {
            "utc": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "load": os.getloadavg(),
            "seconds": round(wall, 1),
            "args": vars(args),
            "stats": stats,
            "rss": rss,
            "crashes": {p.name: p.crashes() for p in supervisor.procs.values() if p.exits},
        }
    finally:
        await replay_http.close()
        await learner_http.close()
        await supervisor.aclose()


async def _wait_for_learner(learner: LearnerClient, timeout_s: float = 240.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            status = await learner.status()
            if status.get("phase") in ("running", "waiting_for_replay") and status["param_version"]:
                return await learner.config()
        except RlfleetError:
            pass
        await asyncio.sleep(0.5)
    raise TimeoutError("the learner did not start")


def report(result: dict[str, Any]) -> str:
    stats: Stats = result["stats"]
    seconds = result["seconds"]
    lines = [
        "| requests | count | per s | p50 ms | p99 ms | answers |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for kind, latencies in sorted(stats.latency.items()):
        ms = np.asarray(latencies) * 1000
        answers = ", ".join(f"{k}: {v}" for k, v in stats.outcomes[kind].most_common())
        lines.append(
            f"| {kind} | {len(ms)} | {len(ms) / seconds:.0f} | {np.percentile(ms, 50):.1f} |"
            f" {np.percentile(ms, 99):.1f} | {answers} |"
        )
    lines += [
        "",
        "| RSS MB | " + " | ".join(f"t={t:.0f} s" for t, _ in _marks(result["rss"])) + " |",
    ]
    lines.append("|---|" + "---:|" * len(_marks(result["rss"])))
    for name in result["rss"][0][1]:
        values = " | ".join(f"{(m.get(name) or 0) / 2**20:.0f}" for _, m in _marks(result["rss"]))
        lines.append(f"| {name} | {values} |")
    errors = {
        kind: {k: v for k, v in c.items() if k not in ("200", "304", "429")}
        for kind, c in stats.outcomes.items()
    }
    errors = {k: v for k, v in errors.items() if v}
    load = ", ".join(f"{x:.2f}" for x in result["load"])
    lines += [
        "",
        f"Errors other than 429: {errors or 'none'}; service exits: {result['crashes'] or 'none'}.",
        f"{result['utc']}, {seconds} s, load average {load}. Latencies are the client's: one"
        " Python process runs every writer, sampler and poller on the same cores.",
    ]
    return "\n".join(lines)


def _marks(rss: list[tuple[float, dict[str, int | None]]]) -> list[tuple[float, dict]]:
    """Five samples spread over the run, first and last included."""
    idx = sorted({round(i * (len(rss) - 1) / 4) for i in range(5)})
    return [rss[i] for i in idx]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.load", description=__doc__)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--writers", type=int, default=64)
    parser.add_argument("--rate-limited-writers", type=int, default=8)
    parser.add_argument("--samplers", type=int, default=4)
    parser.add_argument("--pollers", type=int, default=8)
    args = parser.parse_args(argv)
    result = asyncio.run(load(args))
    print(report(result))
    bad = any(
        k not in ("200", "304", "429") for c in result["stats"].outcomes.values() for k in c
    ) or bool(result["crashes"])
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
