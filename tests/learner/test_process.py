"""Real processes: replay + learner; the learner trains, is killed -9, resumes, stops on SIGTERM."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import pytest

from services.learner.checkpoint import Checkpointer
from shared import codec
from shared.clients import ReplayClient, make_http_client
from tests.support import ROOT, ServiceProcess, wait_until

pytestmark = pytest.mark.e2e

AGENT_CONFIG = {
    "batch_size": 32,
    "hidden_sizes": [32],
    "min_replay_size": 100,
    "samples_per_insert": 16.0,
    "error_buffer": 20_000.0,  # 600 inserts admit up to (600 * 16 + 18_400) / 32 = 875 updates
    "publish_every": 5,
    "prioritized": True,
}


def _transitions(n: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "observation": rng.normal(size=(n, 4)).astype(np.float32),
        "action": rng.integers(0, 2, size=n).astype(np.int32),
        "reward": np.ones(n, np.float32),
        "discount": np.full(n, 0.99**3, np.float32),
        "next_observation": rng.normal(size=(n, 4)).astype(np.float32),
    }


async def _insert(replay_url: str, n: int, seed: int) -> None:
    async with make_http_client(replay_url) as http:
        replay = ReplayClient(http)
        for i in range(0, n, 100):
            await replay.insert(TABLE, data=_transitions(100, seed + i), timeout_s=30.0)


async def _sampled_priorities(replay_url: str) -> np.ndarray:
    async with make_http_client(replay_url) as http:
        return (await ReplayClient(http).sample(TABLE, 64, timeout_s=10.0)).priorities


TABLE = "dqn_transitions"
START_TIMEOUT_S = 120  # jax import + jit on a loaded 2-core machine


def _status(url: str) -> dict:
    return httpx.get(f"{url}/status", timeout=5).json()


def _version(url: str) -> int:
    return codec.decode(httpx.get(f"{url}/params", timeout=5).content)["version"]


def test_trains_survives_kill_9_and_stops_cleanly(tmp_path: Path) -> None:
    checkpoints = tmp_path / "ckpt"
    env = {
        "AGENT_CONFIG": json.dumps(AGENT_CONFIG),
        "CHECKPOINT_DIR": str(checkpoints),
        "CHECKPOINT_EVERY_S": "0.5",
        "RUN_DIR": str(tmp_path / "run"),
        "BATCHES_PER_SAMPLE": "2",
        # the restart after kill -9 reuses the first start's compilations
        "JAX_COMPILATION_CACHE_DIR": str(tmp_path / "xla-cache"),
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
        "LOG_LEVEL": "warning",
    }
    with ServiceProcess("replay", log_path=tmp_path / "replay.log") as replay:
        env["REPLAY_URL"] = replay.url
        learner = ServiceProcess("learner", env, log_path=tmp_path / "learner.log")
        try:
            learner.start(timeout_s=START_TIMEOUT_S)
            asyncio.run(_insert(replay.url, 600, seed=0))
            wait_until(
                lambda: (
                    (s := _status(learner.url))["learner_steps"] >= 200 and s["updates_per_s"] > 0
                ),  # measured over its reports, once a second
                timeout_s=60,
                what="200 learner steps and a measured update rate",
            )
            status = _status(learner.url)
            assert status["param_version"] >= 200 // 5
            wait_until(
                lambda: (_status(learner.url)["checkpoint"] or {}).get("step", 0) >= 200,
                timeout_s=30,
                what="a checkpoint after step 200",
            )
            seen_version = _version(learner.url)
            learner.kill()
            saved_step = int(Checkpointer(checkpoints).load_latest()[1]["step"])
            assert saved_step >= 200

            learner = ServiceProcess("learner", env, log_path=tmp_path / "learner.log")
            learner.start(timeout_s=START_TIMEOUT_S)
            resumed = _status(learner.url)
            assert resumed["learner_steps"] >= saved_step  # not back at 0
            assert resumed["param_version"] > seen_version  # versions only grow
            asyncio.run(_insert(replay.url, 300, seed=10_000))
            wait_until(
                lambda: _status(learner.url)["learner_steps"] >= saved_step + 100,
                timeout_s=60,
                what="the resumed learner to train on",
            )
            assert _version(learner.url) > resumed["param_version"]
            last = _status(learner.url)["learner_steps"]
        finally:
            code = learner.stop()
        # The learner sent |TD error| priorities back (items were inserted with 1.0). It used
        # the whole sampling budget: a few more inserts make room for the test's own sample.
        asyncio.run(_insert(replay.url, 100, seed=20_000))
        priorities = asyncio.run(_sampled_priorities(replay.url))
        assert not np.allclose(priorities, 1.0)
    assert code == 0
    final = Checkpointer(checkpoints).load_latest()[1]
    assert final["step"] >= last  # SIGTERM wrote a last checkpoint
    rows = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert rows and "loss" in json.loads(rows[-1])
    assert list((tmp_path / "run" / "tensorboard").iterdir())


def test_bad_config_exits_non_zero_with_the_reason() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "services.learner"],
        env={"AGENT_CONFIG": '{"batch_sz": 3}', "PATH": "/usr/bin:/bin"},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "batch_sz" in result.stderr and "AGENT_CONFIG" in result.stderr
