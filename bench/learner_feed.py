"""How much the replay service costs the learner: updates/s fed over HTTP vs from memory.

    python -m bench.learner_feed [--batch-size 128] [--seconds 10] [--prefetch 3]
                                 [--batches-per-sample 1 4 8]
    python -m bench.learner_feed --agent sac --env Pendulum-v1 --batch-size 256 \
        --agent-config '{"hidden_sizes": [256, 256]}' --batches-per-sample 1 4

Both sides run the learner's own ``LearnerLoop`` (sampler tasks, prefetch, the update thread,
publishing every ``publish_every`` updates) on the same jitted DQN update, in this process, in
the same run (any agent: DQN on CartPole by default); only where the batches come from differs:
  in-process  ``ArrayReplay``: batches gathered from numpy arrays in this process (uniform
              indices), no socket, no encoding;
  fed         ``ReplayClient``: a real replay service process (memory storage) on a loopback
              socket, sampled over HTTP with msgpack bodies.
It prints both rates and fed/in-process per k (batches per sample request); prefetching should
hide the transport (target >= 90%). The in-process side is measured before and after the fed
side and averaged, so both see the same machine.
"""

from __future__ import annotations

from shared.runtime import configure_process

configure_process()  # as every service does: one XLA thread, inline JAX dispatch, malloc

import argparse
import asyncio
import dataclasses
import json
import os
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from services.experiment import Experiment, build_experiment
from services.learner.counters import EpisodeCounters
from services.learner.logs import PrometheusMetrics
from services.learner.loop import LearnerLoop
from shared.clients import ReplayClient, SampleBatch, make_http_client
from tests.support import ServiceProcess

WARMUP_STEPS = 50


def make_data(experiment: Experiment, n: int, seed: int = 0) -> dict[str, np.ndarray]:
    """``n`` items of the sampled table's signature: actions from the env's action space,
    discounts 0.97, every other field standard normal."""
    rng = np.random.default_rng(seed)
    space = experiment.spec.action_space
    space.seed(seed)
    signature = experiment.agent.tables[experiment.agent.learner.table]["signature"]
    data = {}
    for name, spec in signature.items():
        shape, dtype = (n, *spec["shape"]), np.dtype(spec["dtype"])
        if name == "action":
            data[name] = np.stack([space.sample() for _ in range(n)]).astype(dtype)
        elif name == "discount":
            data[name] = np.full(shape, 0.97, dtype)
        else:
            data[name] = rng.normal(size=shape).astype(dtype)
    return data


class ArrayReplay:
    """The part of ``ReplayClient`` the learner loop uses, served from in-process arrays."""

    base_url = "in-process"

    def __init__(self, data: dict[str, np.ndarray], seed: int = 1) -> None:
        self._data = data
        self._size = len(data["reward"])
        self._rng = np.random.default_rng(seed)

    async def create_table(self, name: str, config: dict[str, Any]) -> dict[str, Any]:
        return {"name": name}

    async def sample(self, table: str, batch_size: int, *, timeout_s: float) -> SampleBatch:
        idx = self._rng.integers(0, self._size, size=batch_size)
        return SampleBatch(
            keys=idx.astype(np.uint64),
            probabilities=np.full(batch_size, 1.0 / self._size),
            priorities=np.ones(batch_size),
            times_sampled=np.ones(batch_size, np.int64),
            table_size=self._size,
            data={k: v[idx] for k, v in self._data.items()},
        )

    async def update_priorities(self, table: str, **kwargs: Any) -> dict[str, int]:
        return {"updated": 0, "deleted": 0}


@dataclass(frozen=True)
class Rate:
    updates_per_s: float
    cpu_ms_per_update: float  # CPU time of this process (all threads) per update
    wait_ms_per_request: float = 0.0  # time the update loop waited for a sampled batch


async def measure(
    replay: ReplayClient | ArrayReplay,
    experiment: Experiment,
    seconds: float,
    prefetch: int,
    sampler_process: bool = False,
) -> Rate:
    """Runs a ``LearnerLoop`` on ``replay`` and measures it for ``seconds`` after a warm-up."""
    loop = LearnerLoop(
        experiment=experiment,
        replay=replay,
        counters=EpisodeCounters(),
        metrics=PrometheusMetrics(),
        prefetch=prefetch,
        sampler_process=sampler_process,
    )
    loop.resume()
    loop.start()
    try:
        while loop.steps < WARMUP_STEPS:  # compiled and streaming
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


async def fed_rate(
    replay_url: str, data: dict[str, np.ndarray], experiment: Experiment, *args: Any
) -> Rate:
    """The learner loop sampling the replay service, which holds ``data``."""
    table = experiment.agent.learner.table
    async with make_http_client(replay_url) as http:
        replay = ReplayClient(http)
        await replay.create_table(table, experiment.agent.tables[table])
        for i in range(0, len(data["reward"]), 2000):
            await replay.insert(table, data={k: v[i : i + 2000] for k, v in data.items()})
        return await measure(replay, experiment, *args, sampler_process=True)


def experiment_for(
    agent_name: str, env_id: str, overrides: dict[str, Any], batch_size: int, k: int, size: int
) -> Experiment:
    """The agent with one table of ``size`` items that never rate-limits sampling."""
    experiment = build_experiment(
        agent_name,
        env_id,
        overrides={**overrides, "batch_size": batch_size},
        batches_per_sample=k,
    )
    agent = experiment.agent
    name = agent.learner.table
    table = {
        "sampler": {"kind": "uniform"},
        "remover": {"kind": "fifo"},
        "max_size": size,
        "rate_limiter": {"kind": "min_size", "min_size_to_sample": 1},
        "signature": agent.tables[name]["signature"],
    }
    return dataclasses.replace(experiment, agent=dataclasses.replace(agent, tables={name: table}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--seconds", type=float, default=10.0, help="per fed measurement")
    parser.add_argument("--prefetch", type=int, default=3, help="as SAMPLE_PREFETCH")
    parser.add_argument(
        "--batches-per-sample", type=int, nargs="+", default=[1, 4, 8], help="k values to compare"
    )
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--agent", default="dqn")
    parser.add_argument("--env", default="CartPole-v1")
    parser.add_argument("--agent-config", type=json.loads, default={}, help="JSON overrides")
    args = parser.parse_args()

    print(
        f"{args.agent} on {args.env} {json.dumps(args.agent_config)}"
        f" XLA_FLAGS={os.environ['XLA_FLAGS']!r} batch_size={args.batch_size}"
        f" prefetch={args.prefetch} cores={os.cpu_count()} load={os.getloadavg()[0]:.1f}"
    )
    print(
        f"{'k':>3} {'in-proc upd/s':>13} {'fed upd/s':>10} {'fed/in-proc':>11}"
        f" {'in-proc cpu ms/upd':>18} {'fed cpu ms/upd':>15} {'fed wait ms':>12}"
    )
    with ServiceProcess("replay", {"LOG_LEVEL": "warning"}) as replay:
        for k in args.batches_per_sample:
            experiment = experiment_for(
                args.agent, args.env, args.agent_config, args.batch_size, k, args.items
            )
            data = make_data(experiment, args.items)
            local = ArrayReplay(data)
            before = asyncio.run(measure(local, experiment, args.seconds / 2, args.prefetch))
            fed = asyncio.run(fed_rate(replay.url, data, experiment, args.seconds, args.prefetch))
            after = asyncio.run(measure(local, experiment, args.seconds / 2, args.prefetch))
            # in-process is measured around the fed run: the same conditions
            base = (before.updates_per_s + after.updates_per_s) / 2
            base_cpu = (before.cpu_ms_per_update + after.cpu_ms_per_update) / 2
            print(
                f"{k:>3} {base:>13.1f} {fed.updates_per_s:>10.1f} {fed.updates_per_s / base:>11.1%}"
                f" {base_cpu:>18.3f} {fed.cpu_ms_per_update:>15.3f}"
                f" {fed.wait_ms_per_request:>12.2f}",
                flush=True,
            )
    print(
        "k = BATCHES_PER_SAMPLE (batches per sample request); target fed/in-process >= 90%;"
        " fed wait = time the update loop waited for a batch (0 when prefetch hides replay)"
    )


if __name__ == "__main__":
    main()
