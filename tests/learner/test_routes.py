"""The learner's HTTP routes, over a real socket (replay unreachable: nothing trains here)."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pytest
from hypothesis import strategies as st

from services.learner.settings import LearnerSettings
from shared import codec
from shared.clients import LearnerClient, make_http_client
from shared.errors import InvalidRequest, Unauthorized
from tests.fuzz.harness import (
    call,
    fuzz,
    json_texts,
    nests,
    operations,
    packed,
    status_ok,
    watch_logs,
)
from tests.learner.support import serve, unreachable_replay

TOKEN = "s3cret"
STATUS_FIELDS = {
    "agent",
    "env_id",
    "learner_steps",
    "param_version",
    "actor_steps",
    "episodes",
    "return_mean_100",
    "eval_return_mean",
    "updates_per_s",
    "checkpoint",
}


@pytest.fixture(scope="module")
def learner(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    run_dir = tmp_path_factory.mktemp("learner-run")
    settings = LearnerSettings(
        replay_url=unreachable_replay(),
        run_dir=run_dir,
        agent_config={"batch_size": 32, "hidden_sizes": [16]},
        seed=3,
    )
    with serve(settings) as (url, _):
        yield url


@pytest.fixture
def http(learner: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=learner, timeout=10) as client:
        yield client


def test_config_has_what_actors_need(http: httpx.Client) -> None:
    config = http.get("/config").json()
    assert config["agent"] == "dqn" and config["env_id"] == "CartPole-v1" and config["seed"] == 3
    assert config["env_spec"]["observation_space"]["shape"] == [4]
    assert config["env_spec"]["action_space"] == {"type": "Discrete", "n": 2, "start": 0}
    assert config["fleet"]["batch_size"] == 32 and config["fleet"]["num_envs"] == 4
    assert config["agent_config"]["batch_size"] == 32
    assert config["agent_config"]["hidden_sizes"] == [16]
    table = config["tables"][config["agent_config"]["table_name"]]
    assert table["signature"]["observation"] == {"dtype": "<f4", "shape": [4]}


def test_params_etag_and_304(http: httpx.Client) -> None:
    response = http.get("/params")
    assert response.status_code == 200
    assert response.headers["content-type"] == codec.CONTENT_TYPE
    body = codec.decode(response.content)
    version = body["version"]
    assert response.headers["etag"] == f'"{version}"' and version >= 1
    kernels = [leaf for leaf in _leaves(body["params"]) if leaf.ndim == 2]
    assert [k.shape for k in kernels] == [(4, 16), (16, 2)]

    again = http.get("/params", headers={"If-None-Match": f'"{version}"'})
    assert again.status_code == 304 and again.content == b""
    assert again.headers["etag"] == f'"{version}"'
    assert http.get("/params", headers={"If-None-Match": 'W/"0", *'}).status_code == 304
    stale = http.get("/params", headers={"If-None-Match": f'"{version - 1}"'})
    assert stale.status_code == 200 and codec.decode(stale.content)["version"] == version


async def test_learner_client_params(learner: str) -> None:
    async with make_http_client(learner) as http:
        client = LearnerClient(http)
        params = await client.params()
        assert params is not None
        assert await client.params(if_newer_than=params.version) is None


def test_episodes_counters_and_return_mean_100(http: httpx.Client) -> None:
    before = http.get("/status").json()
    episodes = [{"return": 7.0, "length": 7}] * 100
    report = {"actor_id": "a-1", "steps": 700, "episodes": episodes, "evaluation": False}
    assert http.post("/episodes", json=report).status_code == 200
    status = http.get("/status").json()
    assert status["actor_steps"] == before["actor_steps"] + 700
    assert status["episodes"] == before["episodes"] + 100
    assert status["return_mean_100"] == 7.0

    # msgpack, with the numpy scalars an actor may send; only the last 100 count
    body = {
        "actor_id": "a-2",
        "steps": np.int64(50),
        "episodes": [{"return": np.float32(1.0), "length": 1}] * 50,
    }
    response = http.post(
        "/episodes", content=codec.encode(body), headers={"Content-Type": codec.CONTENT_TYPE}
    )
    assert response.status_code == 200
    status = http.get("/status").json()
    assert status["return_mean_100"] == pytest.approx(4.0)
    assert status["actors"]["a-2"]["steps"] == 50
    assert status["actors"]["a-2"]["last_seen_s_ago"] < 5


def test_evaluation_episodes_are_kept_apart(http: httpx.Client) -> None:
    before = http.get("/status").json()
    report = {"actor_id": "eval-0", "steps": 300, "episodes": [{"return": 500.0, "length": 500}]}
    http.post("/episodes", json={**report, "evaluation": True}).raise_for_status()
    status = http.get("/status").json()
    assert status["eval_return_mean"] == 500.0
    assert status["return_mean_100"] == before["return_mean_100"]
    assert status["actor_steps"] == before["actor_steps"]
    assert status["episodes"] == before["episodes"]


def test_status_has_every_contract_field(http: httpx.Client) -> None:
    status = http.get("/status").json()
    assert set(status) >= STATUS_FIELDS
    assert status["agent"] == "dqn" and status["env_id"] == "CartPole-v1"
    assert status["learner_steps"] == 0 and status["checkpoint"] is None
    assert status["param_version"] >= 1 and math.isfinite(status["updates_per_s"])
    assert status["phase"] == "waiting_for_replay"


@pytest.mark.parametrize(
    ("body", "content_type", "reason"),
    [
        (b"{not json", "application/json", "not valid JSON"),
        (b'{"actor_id": "a", "steps": -1}', "application/json", "steps"),
        (b'{"steps": 1}', "application/json", "actor_id"),
        (
            b'{"actor_id": "a", "steps": 1, "episodes": [{"return": "x", "length": 1}]}',
            "application/json",
            "return",
        ),
        (
            b'{"actor_id": "a", "steps": 1, "episodes": [{"return": NaN, "length": 1}]}',
            "application/json",
            "finite",
        ),
        (b"\xc1", codec.CONTENT_TYPE, "MessagePack"),
        (b"actor_id=a", "application/x-www-form-urlencoded", "Content-Type"),
    ],
)
def test_bad_episode_reports_are_refused_and_change_nothing(
    http: httpx.Client, body: bytes, content_type: str, reason: str
) -> None:
    before = http.get("/status").json()
    response = http.post("/episodes", content=body, headers={"Content-Type": content_type})
    assert response.status_code in (415, 422)
    assert reason in response.json()["detail"]
    after = http.get("/status").json()
    for key in ("actor_steps", "episodes", "return_mean_100"):
        assert after[key] == before[key]


def test_oversized_episode_report_is_413(http: httpx.Client) -> None:
    response = http.post(
        "/episodes", content=b" " * (5 << 20), headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 413


def test_healthz_and_metrics(http: httpx.Client) -> None:
    health = http.get("/healthz")
    assert health.status_code == 503  # replay cannot be reached
    assert "waiting for replay" in health.json()["detail"]
    metrics = http.get("/metrics")
    assert metrics.status_code == 200
    assert "rlfleet_learner_param_version" in metrics.text


def test_openapi_documents_the_routes(http: httpx.Client) -> None:
    paths = http.get("/openapi.json").json()["paths"]
    assert {"/config", "/params", "/episodes", "/status", "/healthz", "/metrics"} <= set(paths)


async def test_token_auth() -> None:
    settings = LearnerSettings(
        replay_url=unreachable_replay(), rlfleet_token=TOKEN, agent_config={"hidden_sizes": [8]}
    )
    with serve(settings) as (url, _):
        async with httpx.AsyncClient(base_url=url, timeout=10) as http:
            for path in ("/config", "/params", "/status"):
                response = await http.get(path)
                assert response.status_code == 401, path
                assert "Bearer" in response.json()["detail"]
                wrong = await http.get(path, headers={"Authorization": "Bearer nope"})
                assert wrong.status_code == 401
                ok = await http.get(path, headers={"Authorization": f"Bearer {TOKEN}"})
                assert ok.status_code == 200, path
            report = {"actor_id": "a", "steps": 1, "episodes": []}
            assert (await http.post("/episodes", json=report)).status_code == 401
            assert (await http.get("/healthz")).status_code in (200, 503)
            assert (await http.get("/metrics")).status_code == 200

        async with make_http_client(url) as http:
            with pytest.raises(Unauthorized):
                await LearnerClient(http).config()
        async with make_http_client(url, token=TOKEN) as http:
            client = LearnerClient(http)
            assert (await client.config())["env_spec"]["action_space"]["n"] == 2
            await client.report_episodes(
                actor_id="x", steps=3, episodes=[{"return": 2.0, "length": 3}]
            )
            assert (await client.status())["actor_steps"] == 3
            with pytest.raises(InvalidRequest):
                await client.report_episodes(actor_id="", steps=1, episodes=[])


def _leaves(nest):
    if isinstance(nest, dict):
        for value in nest.values():
            yield from _leaves(value)
    else:
        yield nest


COUNTERS = ("actor_steps", "episodes", "eval_episodes", "return_mean_100", "eval_return_mean")


def test_fuzz_every_endpoint(learner: str, http: httpx.Client) -> None:
    """Issue 9's fuzzing, on this module's learner (last: it reports episodes of its own):
    schemathesis on the OpenAPI schema, adversarial MessagePack and JSON reports. For every case:
    no 5xx (but /healthz's documented 503: the replay is unreachable), no traceback logged,
    the counters unchanged after a refusal, config and parameters readable after a report."""

    def counters() -> dict[str, Any]:
        response = http.get("/status")
        assert response.status_code == 200
        status = response.json()
        actors = {name: (a["steps"], a["episodes"]) for name, a in status["actors"].items()}
        return {"actors": actors, **{k: status[k] for k in COUNTERS}}

    last = [counters()]

    def check(response: Any) -> int:
        status_ok(response)
        now = counters()
        if 400 <= response.status_code < 500:
            assert now == last[0], "a refused request changed the learner's counters"
        elif response.request.method == "POST":
            assert http.get("/config").status_code == 200
            codec.decode(http.get("/params").content)
        logs.assert_clean()
        last[0] = now
        return response.status_code

    report = st.fixed_dictionaries(
        {"actor_id": st.text(max_size=4) | nests, "steps": st.integers(-1, 2**64 - 1) | nests},
        optional={
            "episodes": st.lists(st.fixed_dictionaries({"return": nests, "length": nests})) | nests
        },
    )
    with watch_logs() as logs:
        for operation, modes in operations(http.get("/openapi.json").json()):
            for mode in modes:
                endpoint = f"learner {operation.method.upper()} {operation.path} ({mode.value})"
                cases = operation.as_strategy(generation_mode=mode)
                fuzz(endpoint, cases, lambda case: check(call(case, learner)))
        for kind, bodies in (("msgpack", packed(report)), ("JSON", json_texts())):
            headers = {
                "Content-Type": codec.CONTENT_TYPE if kind == "msgpack" else "application/json"
            }
            fuzz(
                f"learner POST /episodes ({kind} bodies)",
                bodies,
                lambda body, headers=headers: check(
                    http.post("/episodes", content=body, headers=headers)
                ),
            )
