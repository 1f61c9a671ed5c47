"""`docker compose up --scale actor=3`, emulated: the compose file's own commands and environment,
run as local processes (tests/containers/emulation.py says how), train DQN together.

The project's ``.env`` is ``.env.example``; the only variable given on top is CHECKPOINT_EVERY_S,
which the compose file reads from the environment, so that a checkpoint is written within seconds.
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from shared.codec import CONTENT_TYPE, decode
from tests.containers.compose import ENV_EXAMPLE, load_compose, read_env_file, service_environment
from tests.containers.emulation import Container, Emulation

pytestmark = pytest.mark.e2e

ACTORS = 3
DOT_ENV = {**read_env_file(ENV_EXAMPLE), "CHECKPOINT_EVERY_S": "2"}
TOKEN = DOT_ENV["RLFLEET_TOKEN"]
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulation]:
    workdir: Path = tmp_path_factory.mktemp("compose")
    emulation = Emulation(load_compose(DOT_ENV), workdir)
    try:
        emulation.up(scale={"actor": ACTORS}, timeout_s=120)
        yield emulation
    finally:
        emulation.down()


def get_json(container: Container, path: str) -> dict[str, Any]:
    response = httpx.get(f"{container.url}{path}", headers=AUTH, timeout=5)
    response.raise_for_status()
    return response.json()


def learner(system: Emulation) -> Container:
    return system.containers["learner"][0]


def learner_status(system: Emulation) -> dict[str, Any]:
    try:
        return get_json(learner(system), "/status")
    except httpx.HTTPError:
        return {}


def test_up_starts_every_service_with_three_actors(system: Emulation) -> None:
    assert {s: len(c) for s, c in system.containers.items()} == {
        "redis": 1,
        "replay": 1,
        "learner": 1,
        "actor": ACTORS,
        "evaluator": 1,
    }
    for service in system.containers:
        system.wait_healthy(service, timeout_s=60)


def test_the_system_trains(system: Emulation) -> None:
    system.wait_for(
        "learner steps > 0",
        lambda: learner_status(system).get("learner_steps", 0) > 0,
        timeout_s=90,
    )
    first = learner_status(system)["learner_steps"]
    system.wait_for(
        "learner steps to grow",
        lambda: learner_status(system).get("learner_steps", 0) > first,
        timeout_s=30,
    )
    status = learner_status(system)
    assert status["agent"] == "dqn" and status["env_id"] == "CartPole-v1"
    assert status["actor_steps"] > 0 and status["param_version"] > 0


def test_three_actors_and_the_evaluator_report(system: Emulation) -> None:
    names = {c.name for c in system.containers["actor"]}
    evaluator = system.containers["evaluator"][0].name

    def reported() -> bool:
        actors = learner_status(system).get("actors", {})
        return names <= set(actors) and evaluator in actors

    system.wait_for("three actors and the evaluator in learner /status", reported, timeout_s=60)
    actors = learner_status(system)["actors"]
    assert all(actors[n]["steps"] > 0 and not actors[n]["evaluation"] for n in names)
    assert actors[evaluator]["evaluation"]
    for container in system.containers["actor"]:
        status = get_json(container, "/status")
        assert status["actor_id"] == container.name
        assert status["steps"] > 0 and status["inserted_items"] > 0
        assert status["param_version"] > 0, "the actor pulled parameters from the learner"


def test_learner_status_and_params_answer_with_the_token(system: Emulation) -> None:
    url = learner(system).url
    assert httpx.get(f"{url}/status", timeout=5).status_code == 401
    assert httpx.get(f"{url}/healthz", timeout=5).status_code == 200
    response = httpx.get(f"{url}/params", headers=AUTH, timeout=10)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith(CONTENT_TYPE)
    params = decode(response.content)
    assert params["version"] > 0 and params["params"]
    etag = response.headers["etag"]
    again = httpx.get(f"{url}/params", headers={**AUTH, "If-None-Match": etag}, timeout=10)
    assert again.status_code in {200, 304}  # 304 unless a newer version came out in between
    assert httpx.get(f"{url}/docs", headers=AUTH, timeout=5).status_code == 200


def test_the_experiment_in_the_file_is_what_runs(system: Emulation) -> None:
    """x-experiment reached the learner; the table it asked for holds the actors' items."""
    experiment = service_environment(system.services["learner"])
    config = get_json(learner(system), "/config")
    assert config["agent"] == experiment["AGENT"]
    assert config["env_id"] == experiment["ENV_ID"]
    assert config["seed"] == int(experiment["SEED"])
    overrides = json.loads(experiment["AGENT_CONFIG"])
    assert {k: config["agent_config"][k] for k in overrides} == overrides
    replay = system.containers["replay"][0]
    for table in config["tables"]:
        assert get_json(replay, f"/tables/{table}")["size"] > 0, table


def test_a_killed_learner_restarts_from_its_checkpoint_and_actors_rejoin(
    system: Emulation,
) -> None:
    system.wait_for(
        "a checkpoint",
        lambda: (learner_status(system).get("checkpoint") or {}).get("step", 0) > 0,
        timeout_s=30,
    )
    before = learner_status(system)
    checkpoint_step = before["checkpoint"]["step"]
    container = learner(system)
    container.signal(signal.SIGKILL)  # a crash: no final checkpoint
    assert container.proc is not None
    container.proc.wait(timeout=10)
    killed_at = time.monotonic()

    system.supervise()  # the restart policy (unless-stopped) starts it again
    assert container.restarts == 1 and container.running(), system.report("learner")
    system.wait_healthy("learner", timeout_s=90)
    resumed = learner_status(system)
    assert resumed["learner_steps"] >= checkpoint_step, (before, resumed)
    system.wait_for(
        "the restarted learner to train and publish past the old versions",
        lambda: (
            learner_status(system).get("param_version", 0) > before["param_version"]
            and learner_status(system).get("learner_steps", 0) > resumed["learner_steps"]
        ),
        timeout_s=60,
    )

    def rejoined() -> bool:
        actors = learner_status(system).get("actors", {})
        return all(
            c.name in actors and actors[c.name]["last_seen_s_ago"] < time.monotonic() - killed_at
            for c in system.containers["actor"]
        )

    system.wait_for("every actor to report to the restarted learner", rejoined, timeout_s=60)
    version = learner_status(system)["param_version"]
    system.wait_for(
        "actors to pull the restarted learner's parameters",
        lambda: all(
            get_json(c, "/status")["param_version"] > before["param_version"]
            for c in system.containers["actor"]
        ),
        timeout_s=60,
    )
    assert version > before["param_version"]
    assert all(c.restarts == 0 for c in system.all() if c.service != "learner"), system.report()
