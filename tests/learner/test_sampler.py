"""The learner's sampler process against a real replay service process."""

from __future__ import annotations

import asyncio
import glob
import os
import subprocess
import sys
import time

import numpy as np
import pytest

from services.learner.sampler import BATCH, NOT_FOUND, UNREACHABLE, SamplerProcess
from shared.clients import ReplayClient, make_http_client
from tests.support import ServiceProcess, free_port, wait_until

SIGNATURE = {
    "observation": {"dtype": "<f4", "shape": [2]},
    "action": {"dtype": "<i4", "shape": []},
}
TABLE = {
    "sampler": {"kind": "uniform"},
    "remover": {"kind": "fifo"},
    "max_size": 1000,
    "rate_limiter": {"kind": "min_size", "min_size_to_sample": 1},
    "signature": SIGNATURE,
}


def leftovers(pid: int | None = None) -> list[str]:
    """Shared-memory folders left by the samplers of process ``pid`` (default: this one)."""
    return glob.glob(f"/dev/shm/rlfleet-sampler-{pid or os.getpid()}-*")


async def fill(url: str, n: int) -> None:
    ids = np.arange(n)
    async with make_http_client(url) as http:
        replay = ReplayClient(http)
        await replay.create_table("t", TABLE)
        data = {"observation": np.stack([ids, -ids], 1).astype(np.float32), "action": ids}
        await replay.insert("t", data={**data, "action": ids.astype(np.int32)})


def start(url: str, batch_size: int = 8, prefetch: int = 2) -> SamplerProcess:
    sampler = SamplerProcess(
        replay_url=url,
        token=None,
        table="t",
        signature=SIGNATURE,
        batch_size=batch_size,
        prefetch=prefetch,
    )
    sampler.wait_ready()
    return sampler


def next_record(sampler: SamplerProcess, kind: int, timeout_s: float = 20.0):
    deadline = time.monotonic() + timeout_s
    while True:
        got = sampler.get(timeout_s=1.0)
        if got[0] == kind:
            return got
        assert got[0] in (-1, UNREACHABLE, NOT_FOUND, BATCH), got
        if got[0] == BATCH:
            sampler.release(got[1])
        assert time.monotonic() < deadline, f"no record of kind {kind} in {timeout_s} s"


def test_batches_arrive_in_shared_memory_and_slots_are_reused() -> None:
    with ServiceProcess("replay") as replay:
        asyncio.run(fill(replay.url, 100))
        sampler = start(replay.url)
        try:
            assert not leftovers()  # unlinked once the child mapped them
            seen = set()
            for _ in range(20):  # more batches than slots: each slot is filled again
                _, slot, batch, _ = next_record(sampler, BATCH)
                ids = batch.data["action"]
                assert batch.data["observation"].shape == (8, 2) and batch.table_size == 100
                np.testing.assert_array_equal(batch.data["observation"][:, 0], ids)
                np.testing.assert_array_equal(batch.data["observation"][:, 1], -ids)
                assert np.all(batch.probabilities == pytest.approx(0.01))
                assert np.all(batch.priorities == 1.0) and np.all(batch.times_sampled >= 1)
                seen.add(slot)
                sampler.release(slot)
            assert seen == {0, 1, 2}  # prefetch + 1 slots
        finally:
            sampler.close()
        assert sampler._proc.returncode == 0  # it left when its stdin closed


def test_a_missing_table_and_a_down_replay_are_reported_not_fatal() -> None:
    port = free_port()
    sampler = start(f"http://127.0.0.1:{port}")
    try:
        assert next_record(sampler, UNREACHABLE)[3]  # the reason, for the learner's log
        with ServiceProcess("replay", port=port):
            next_record(sampler, NOT_FOUND)
            asyncio.run(fill(f"http://127.0.0.1:{port}", 50))
            _, slot, batch, _ = next_record(sampler, BATCH)
            assert batch.table_size == 50
            sampler.release(slot)
    finally:
        sampler.close()


def test_the_child_dies_with_its_parent() -> None:
    """PDEATHSIG: a learner killed with SIGKILL leaves no sampler behind."""
    code = (
        "import sys, time\n"
        "from services.learner.sampler import SamplerProcess\n"
        "s = SamplerProcess(replay_url=sys.argv[1], token=None, table='t',"
        " signature={'a': {'dtype': '<i4', 'shape': []}}, batch_size=4, prefetch=1)\n"
        "s.wait_ready(); print(s.pid, flush=True); time.sleep(60)\n"
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", code, f"http://127.0.0.1:{free_port()}"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        child = int(parent.stdout.readline())
        os.kill(parent.pid, 9)
        parent.wait(10)
        wait_until(lambda: not os.path.exists(f"/proc/{child}"), timeout_s=10, what="no child")
    finally:
        parent.kill()
        parent.wait()
    assert not leftovers(parent.pid)
