"""The on-policy agents' queue table through a real replay server: every unroll consumed once.

Three actors, each a ``SequenceAdder`` (as IMPALA and PPO build it) feeding the actor service's
own ``InsertWriter`` (429 back-pressure, retried), write unrolls into PPO's queue table while a
learner takes batches: each unroll comes out exactly once, each actor's in the order written,
and the actors were held back while the queue was full.
"""

from __future__ import annotations

import asyncio

import gymnasium
import numpy as np

from services.actor.writer import InsertWriter
from shared.agents.ppo import Config, make_agent
from shared.errors import RateLimited
from shared.interfaces import Batching, EnvSpec

ACTORS, NUM_ENVS, UNROLLS_PER_ENV, BATCH = 3, 2, 12, 4
UNROLL = 4


async def test_every_unroll_is_consumed_exactly_once_under_concurrent_actors(replay) -> None:
    spec = EnvSpec(
        "CartPole-v1",
        *(lambda e: (e.observation_space, e.action_space))(gymnasium.make("CartPole-v1")),
    )
    config = Config(unroll_length=UNROLL, batch_size=BATCH, queue_size=6, insert_batch_size=2)
    agent = make_agent(config, spec)
    ((name, table),) = agent.tables.items()
    await replay.create_table(name, table)
    batching = Batching(agent.fleet.insert_batch_size, None, lambda: 0.0)
    writers = []

    async def actor(index: int) -> None:
        writer = InsertWriter(
            replay, name, table_config=table, max_pending=2, concurrency=1, timeout_s=0.05
        )
        writers.append(writer)
        writer.start()
        adder = agent.make_adder({name: writer.put}, NUM_ENVS, batching)
        # observation [actor, env, t, 0]: which stream and which step each item starts at
        envs = np.arange(NUM_ENVS)

        def observation(t):
            return np.stack([np.full(NUM_ENVS, index), envs, np.full(NUM_ENVS, t), 0 * envs], 1)

        adder.add_first(observation(0))
        for t in range(UNROLL * UNROLLS_PER_ENV + 1):  # + 1: the last bootstrap step
            adder.add(
                np.zeros(NUM_ENVS, np.int32), np.ones(NUM_ENVS), observation(t + 1),
                terminated=np.zeros(NUM_ENVS, bool), truncated=np.zeros(NUM_ENVS, bool),
                extras={"log_prob": np.zeros(NUM_ENVS, np.float32), "param_version": np.ones(NUM_ENVS, np.int32)},
            )  # fmt: skip
            while writer.full:
                await writer.wait_for_room(0.2)
        adder.flush()
        await writer.drain(30)
        await writer.aclose()

    total = ACTORS * NUM_ENVS * UNROLLS_PER_ENV
    seen: list[tuple[int, int, int]] = []
    sizes: list[int] = []

    async def learner() -> None:
        while len(seen) < total:
            try:
                batch = await replay.sample(name, BATCH, timeout_s=0.5)
            except RateLimited:
                continue
            first = np.asarray(batch.data["observation"])[:, 0, :3].astype(int)
            seen.extend(map(tuple, first.tolist()))
            sizes.append(batch.table_size)
            if len(seen) <= 3 * BATCH:  # a learner slower than the actors at first: the queue fills
                await asyncio.sleep(0.1)

    await asyncio.wait_for(asyncio.gather(learner(), *(actor(i) for i in range(ACTORS))), 60)
    expected = {
        (a, b, UNROLL * k)
        for a in range(ACTORS)
        for b in range(NUM_ENVS)
        for k in range(UNROLLS_PER_ENV)
    }
    assert len(seen) == total and set(seen) == expected  # each exactly once
    for a in range(ACTORS):
        for b in range(NUM_ENVS):
            starts = [t for (x, y, t) in seen if (x, y) == (a, b)]
            assert starts == sorted(starts)  # the queue keeps each stream's order
    assert sum(w.rate_limited for w in writers) > 0  # actors were held back by the full queue
    assert max(sizes) == config.queue_size  # ... which never held more than its size
    info = await replay.info(name)
    assert info["size"] == 0 and info["num_inserts"] == info["num_samples"] == total
