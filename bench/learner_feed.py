"""How much the replay service costs the learner: updates/s fed over HTTP vs from memory.

    python -m bench.learner_feed [--batch-size 128] [--seconds 10] [--prefetch 2]
                                 [--batches-per-sample 1 4]

Both runs use the same jitted DQN ``sgd_step`` in this process, in the same run:
  raw   the update in a tight loop on batches indexed from an in-process numpy array;
  fed   the learner's own ``LearnerLoop`` (sampler tasks, prefetch, worker thread) sampling a
        real replay service process (memory storage) on a loopback socket.
It prints both rates and fed/raw per k (batches per sample request; raw uses the same k and the
same ``run_updates``); prefetching should hide the transport (target >= 90%).
"""

from __future__ import annotations

import os

os.environ.setdefault(
    "XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
)

import argparse
import asyncio
import time
from dataclasses import dataclass
from typing import Any

import jax
import numpy as np

from services.learner.counters import EpisodeCounters
from services.learner.logs import PrometheusMetrics
from services.learner.loop import LearnerLoop, run_updates
from shared.agents.dqn import DQNConfig, make_learner, make_network
from shared.clients import ReplayClient, make_http_client
from tests.support import ServiceProcess

OBS_DIM, NUM_ACTIONS = 4, 2


def make_data(n: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "observation": rng.normal(size=(n, OBS_DIM)).astype(np.float32),
        "action": rng.integers(0, NUM_ACTIONS, size=n).astype(np.int32),
        "reward": rng.normal(size=n).astype(np.float32),
        "discount": np.full(n, 0.97, np.float32),
        "next_observation": rng.normal(size=(n, OBS_DIM)).astype(np.float32),
    }


def raw_rate(
    learner: Any, state: Any, data: dict[str, np.ndarray], batch_size: int, k: int, seconds: float
) -> Rate:
    """The same update path on batches gathered from in-process arrays."""
    rng = np.random.default_rng(1)
    n = len(data["reward"])

    def one(state: Any) -> Any:
        idx = rng.integers(0, n, size=batch_size * k)
        return run_updates(learner, state, {key: v[idx] for key, v in data.items()}, k)[0]

    for _ in range(5):
        state = one(state)
    steps, start, cpu = 0, time.perf_counter(), time.process_time()
    while time.perf_counter() - start < seconds:
        state = one(state)
        steps += k
    return Rate(
        updates_per_s=steps / (time.perf_counter() - start),
        cpu_ms_per_update=(time.process_time() - cpu) * 1e3 / steps,
    )


@dataclass(frozen=True)
class Rate:
    updates_per_s: float
    cpu_ms_per_update: float  # CPU time of this process (all threads) per update
    wait_ms_per_request: float = 0.0  # time the update loop waited for a sampled batch


async def fed_rate(
    replay_url: str,
    config: DQNConfig,
    learner: Any,
    state: Any,
    data: dict[str, np.ndarray],
    seconds: float,
    prefetch: int,
    k: int,
) -> float:
    """The learner loop sampling the replay service."""
    table_config = {
        "sampler": {"kind": "uniform"},
        "remover": {"kind": "fifo"},
        "max_size": len(data["reward"]),
        "rate_limiter": {"kind": "min_size", "min_size_to_sample": 1},
        "signature": config.replay_table_config(OBS_DIM)["signature"],
    }
    async with make_http_client(replay_url) as http:
        replay = ReplayClient(http)
        await replay.create_table(config.table_name, table_config)
        for i in range(0, len(data["reward"]), 2000):
            await replay.insert(
                config.table_name, data={k: v[i : i + 2000] for k, v in data.items()}
            )
        loop = LearnerLoop(
            learner=learner,
            state=state,
            agent="dqn",
            env_id="bench",
            agent_config=config,
            tables={config.table_name: table_config},
            replay=replay,
            counters=EpisodeCounters(),
            metrics=PrometheusMetrics(),
            prefetch=prefetch,
            batches_per_sample=k,
        )
        loop.resume()
        loop.start()
        try:
            while loop.steps < 50:  # compiled and streaming
                if loop.phase == "failed":
                    raise RuntimeError(loop.error)
                await asyncio.sleep(0.05)
            s0, t0, c0 = loop.steps, time.perf_counter(), time.process_time()
            await asyncio.sleep(seconds)
            s1, t1, c1 = loop.steps, time.perf_counter(), time.process_time()
            waits = loop.metrics.sample_wait_seconds.collect()[0].samples
        finally:
            await loop.stop()
    wait_sum = next(x.value for x in waits if x.name.endswith("_sum"))
    wait_count = next(x.value for x in waits if x.name.endswith("_count"))
    return Rate(
        updates_per_s=(s1 - s0) / (t1 - t0),
        cpu_ms_per_update=(c1 - c0) * 1e3 / max(s1 - s0, 1),
        wait_ms_per_request=wait_sum * 1e3 / max(wait_count, 1),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--seconds", type=float, default=10.0, help="per fed measurement")
    parser.add_argument("--prefetch", type=int, default=2)
    parser.add_argument(
        "--batches-per-sample", type=int, nargs="+", default=[1, 4], help="k values to compare"
    )
    parser.add_argument("--items", type=int, default=20_000)
    args = parser.parse_args()

    config = DQNConfig(batch_size=args.batch_size)
    learner = make_learner(config, make_network(config, NUM_ACTIONS))
    state = learner.init(jax.random.PRNGKey(0), OBS_DIM)
    data = make_data(args.items)
    print(
        f"XLA_FLAGS={os.environ['XLA_FLAGS']!r} batch_size={args.batch_size}"
        f" prefetch={args.prefetch} cores={os.cpu_count()} load={os.getloadavg()[0]:.1f}"
    )
    print(
        f"{'k':>3} {'raw upd/s':>10} {'fed upd/s':>10} {'fed/raw':>8}"
        f" {'raw cpu ms/upd':>15} {'fed cpu ms/upd':>15} {'fed wait ms':>12}"
    )
    with ServiceProcess("replay", {"LOG_LEVEL": "warning"}) as replay:
        for k in args.batches_per_sample:
            half = args.seconds / 2
            raw_before = raw_rate(learner, state, data, args.batch_size, k, half)
            fed = asyncio.run(
                fed_rate(replay.url, config, learner, state, data, args.seconds, args.prefetch, k)
            )
            raw_after = raw_rate(learner, state, data, args.batch_size, k, half)
            # raw is measured around the fed run: the same conditions
            raw = (raw_before.updates_per_s + raw_after.updates_per_s) / 2
            raw_cpu = (raw_before.cpu_ms_per_update + raw_after.cpu_ms_per_update) / 2
            print(
                f"{k:>3} {raw:>10.1f} {fed.updates_per_s:>10.1f} {fed.updates_per_s / raw:>8.1%}"
                f" {raw_cpu:>15.3f} {fed.cpu_ms_per_update:>15.3f} {fed.wait_ms_per_request:>12.2f}"
            )
    print(
        "k = BATCHES_PER_SAMPLE (batches per sample request); target fed/raw >= 90%;"
        " fed wait = time the update loop waited for a batch (0 when prefetch hides replay)"
    )


if __name__ == "__main__":
    main()
