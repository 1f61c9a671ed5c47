"""The learner training against an in-process replay app, both on real sockets (fast path)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import numpy as np
import pytest

from services.learner.logs import read_metrics
from services.learner.settings import LearnerSettings
from services.replay.app import create_app as create_replay_app
from services.replay.settings import Settings as ReplaySettings
from shared import codec
from shared.agents.dqn import DQNConfig
from shared.clients import ReplayClient, make_http_client
from tests.learner.support import serve, serve_app
from tests.support import wait_until

AGENT_CONFIG = {
    "batch_size": 16,
    "hidden_sizes": [16],
    "min_replay_size": 50,
    "samples_per_insert": 8.0,
    "error_buffer": 2000.0,
    "insert_batch_size": 64,
    "publish_every": 4,
}


@pytest.fixture
def replay_url() -> Iterator[str]:
    with serve_app(create_replay_app(ReplaySettings(redis_url=None))) as url:
        yield url


def _transitions(n: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "observation": rng.normal(size=(n, 4)).astype(np.float32),
        "action": rng.integers(0, 2, size=n).astype(np.int32),
        "reward": np.ones(n, np.float32),
        "discount": np.full(n, 0.97, np.float32),
        "next_observation": rng.normal(size=(n, 4)).astype(np.float32),
    }


async def _insert(url: str, n: int) -> None:
    async with make_http_client(url) as http:
        await ReplayClient(http).insert("dqn_transitions", data=_transitions(n), timeout_s=10)


@pytest.mark.parametrize("sample_process", [True, False], ids=["sampler-process", "event-loop"])
def test_learner_trains_on_what_replay_holds(replay_url: str, tmp_path, sample_process) -> None:
    settings = LearnerSettings(
        replay_url=replay_url,
        agent_config=AGENT_CONFIG,
        run_dir=tmp_path,
        sample_process=sample_process,
    )
    with serve(settings) as (url, _), httpx.Client(base_url=url, timeout=10) as http:
        wait_until(lambda: http.get("/healthz").status_code == 200, timeout_s=30, what="healthz")
        first = codec.decode(http.get("/params").content)
        asyncio.run(_insert(replay_url, 200))  # admits 200 * 8 + 2000 - 400 items = 200 updates
        wait_until(
            lambda: http.get("/status").json()["learner_steps"] >= 100,
            timeout_s=60,
            what="100 updates",
        )
        status = http.get("/status").json()
        assert status["phase"] == "running" and status["replay"]["table_size"] == 200
        assert status["replay"]["batches_per_sample"] == 4  # the default that fits the limiter
        assert status["learner_steps"] % 4 == 0
        assert bool(status["replay"]["sampler_process"]) == sample_process
        latest = codec.decode(http.get("/params").content)
        assert latest["version"] > first["version"]
        kernel = latest["params"]["params"]["Dense_0"]["kernel"]
        assert not np.array_equal(kernel, first["params"]["params"]["Dense_0"]["kernel"])
        wait_until(lambda: bool(read_metrics(tmp_path)), timeout_s=10, what="a metrics row")
        assert "rlfleet_learner_sgd_step_seconds_count" in http.get("/metrics").text
    row = read_metrics(tmp_path)[-1]
    assert {"loss", "q_mean", "updates_per_s", "param_version"} <= set(row)


def test_a_conflicting_table_fails_the_learner_visibly(replay_url: str) -> None:
    other = DQNConfig(max_replay_size=1234).replay_table_config(4)
    httpx.put(f"{replay_url}/tables/dqn_transitions", json=other).raise_for_status()
    settings = LearnerSettings(replay_url=replay_url, agent_config=AGENT_CONFIG)
    with serve(settings) as (url, _), httpx.Client(base_url=url, timeout=10) as http:
        wait_until(
            lambda: http.get("/status").json()["phase"] == "failed", timeout_s=30, what="failure"
        )
        health = http.get("/healthz")
        assert health.status_code == 503
        assert "replay refused the learner" in health.json()["detail"]
        assert http.get("/params").status_code == 200  # still serves what it has
