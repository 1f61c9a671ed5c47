"""The actor as a real process against real replay and learner processes."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from tests.support import ServiceProcess, wait_until

pytestmark = pytest.mark.e2e

TOKEN = "s3cret"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
N_STEP = 3
NUM_ENVS = 4
# Inserts are never held back by the rate limiter, so every step the actor takes reaches replay.
AGENT_CONFIG = {
    "batch_size": 32,
    "hidden_sizes": [32],
    "min_replay_size": 100,
    "samples_per_insert": 1.0,
    "error_buffer": 1e7,
    "n_step": N_STEP,
    "insert_batch_size": 16,
    "variable_update_period": 32,
    "publish_every": 5,
}


def get(url: str, path: str, headers: dict[str, str] | None = None) -> dict:
    response = httpx.get(f"{url}{path}", headers=headers, timeout=5)
    response.raise_for_status()
    return response.json()


def start_services(
    tmp_path: Path, token: str | None = None
) -> tuple[ServiceProcess, ServiceProcess]:
    common = {"LOG_LEVEL": "warning", **({"RLFLEET_TOKEN": token} if token else {})}
    replay = ServiceProcess("replay", common, log_path=tmp_path / "replay.log").start()
    learner = ServiceProcess(
        "learner",
        {**common, "REPLAY_URL": replay.url, "AGENT_CONFIG": json.dumps(AGENT_CONFIG)},
        log_path=tmp_path / "learner.log",
    )
    return replay, learner


def actor_process(
    tmp_path: Path, replay: ServiceProcess, learner: ServiceProcess, **env: str
) -> ServiceProcess:
    name = env.get("ACTOR_ID", "actor-0")
    return ServiceProcess(
        "actor",
        {
            "LOG_LEVEL": "info",
            "LEARNER_URL": learner.url,
            "REPLAY_URL": replay.url,
            "ACTOR_ID": name,
            "NUM_ENVS": str(NUM_ENVS),
            "REPORT_EVERY_S": "0.2",
            **env,
        },
        log_path=tmp_path / f"{name}.log",
    )


def test_actor_and_evaluator_feed_replay_and_learner_and_flush_on_sigterm(tmp_path):
    replay, learner = start_services(tmp_path, TOKEN)
    # The actor starts first and waits for the learner.
    actor = actor_process(tmp_path, replay, learner, RLFLEET_TOKEN=TOKEN, SEED="7")
    evaluator = actor_process(
        tmp_path, replay, learner, RLFLEET_TOKEN=TOKEN, ACTOR_ID="eval-0", ROLE="evaluator"
    )
    try:
        actor.start()
        assert httpx.get(f"{actor.url}/status", timeout=5).status_code == 401
        assert httpx.get(f"{actor.url}/healthz", timeout=5).json() == {"status": "ok"}
        assert get(actor.url, "/status", AUTH)["state"] == "waiting_for_learner"
        learner.start()
        evaluator.start()

        wait_until(
            lambda: get(actor.url, "/status", AUTH)["inserted_items"] >= 500,
            timeout_s=60,
            what="500 items from the actor",
        )
        status = get(actor.url, "/status", AUTH)
        assert status["actor_id"] == "actor-0"
        assert status["env_id"] == "CartPole-v1"
        assert status["num_envs"] == NUM_ENVS
        assert status["state"] == "acting"
        assert status["param_version"] >= 1
        assert status["steps"] >= status["inserted_items"]
        assert status["episodes"] >= 1
        assert status["steps_per_s"] > 0
        assert status["last_error"] is None
        metrics = httpx.get(f"{actor.url}/metrics", timeout=5).text
        assert 'rlfleet_actor_steps_total{actor_id="actor-0",role="actor"}' in metrics

        wait_until(
            lambda: get(learner.url, "/status", AUTH)["eval_episodes"] >= 1,
            timeout_s=60,
            what="an evaluation episode",
        )
        evaluation = get(evaluator.url, "/status", AUTH)
        assert evaluation["role"] == "evaluator"
        assert evaluation["inserted_items"] == 0
        evaluator.stop()

        wait_until(
            lambda: get(learner.url, "/status", AUTH)["learner_steps"] > 0,
            timeout_s=60,
            what="the learner training on the actor's items",
        )
        assert actor.stop() == 0
        # After SIGTERM: every formed item was stored and every step reported. Items still
        # missing are the open n-step windows (at most n - 1 per env).
        learned = get(learner.url, "/status", AUTH)
        table = get(replay.url, "/tables/dqn_transitions", AUTH)
        steps = learned["actors"]["actor-0"]["steps"]
        assert steps - NUM_ENVS * (N_STEP - 1) <= table["num_inserts"] <= steps
    finally:
        for process in (actor, evaluator, learner, replay):
            process.stop()


def test_actor_survives_learner_and_replay_restarts(tmp_path):
    replay, learner = start_services(tmp_path)
    learner.start()
    actor = actor_process(tmp_path, replay, learner).start()
    try:
        inserted = lambda: get(actor.url, "/status")["inserted_items"]  # noqa: E731
        wait_until(lambda: inserted() >= 200, timeout_s=60, what="first items")

        learner.kill()
        version = get(actor.url, "/status")["param_version"]
        before = get(actor.url, "/status")["steps"]
        # It keeps acting with the parameters it has while nobody answers.
        wait_until(
            lambda: get(actor.url, "/status")["steps"] > before + 500,
            timeout_s=30,
            what="acting without the learner",
        )
        status = get(actor.url, "/status")
        assert status["state"] == "acting"
        assert status["param_version"] == version

        replay.kill()  # in memory: the table is gone with it; the actor creates it again
        replay.start()
        count = inserted()
        wait_until(
            lambda: inserted() > count + 200,
            timeout_s=60,
            what="inserts into the restarted replay",
        )
        assert get(replay.url, "/tables/dqn_transitions")["num_inserts"] > 0

        learner.start()
        wait_until(
            lambda: get(learner.url, "/status")["actor_steps"] > 0,
            timeout_s=60,
            what="reports to the restarted learner",
        )
        assert get(actor.url, "/status")["state"] == "acting"
        assert actor.stop() == 0
    finally:
        for process in (actor, learner, replay):
            process.stop()
