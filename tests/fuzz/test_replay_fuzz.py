"""Fuzzing the replay on both backends: schemathesis against its OpenAPI schema (every endpoint),
and adversarial MessagePack and JSON bodies for the bulk endpoints (tests/fuzz/harness.py).

For every case: no 5xx, nothing logged with a traceback, the tables unchanged after a refusal
(4xx), and after an accepted request every table still listable, readable and sampleable.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pytest
from hypothesis import strategies as st

from services.replay.app import create_app
from services.replay.settings import Settings
from shared import codec
from tests.fuzz.harness import (
    LogWatch,
    call,
    fuzz,
    insert_bodies,
    json_texts,
    operations,
    packed,
    priorities_bodies,
    sample_bodies,
    watch_logs,
)
from tests.replay.conftest import ServerThread
from tests.replay.util import table
from tests.support import free_port

MSGPACK = {"Content-Type": codec.CONTENT_TYPE}
SIGNED = {"obs": {"dtype": "<f4", "shape": [3]}, "a": {"dtype": "<i8", "shape": []}}
TABLES = {
    "t": (table(), {"x": 1}),
    "s": (table(signature=SIGNED), {"obs": np.array([0.5, 1.5, 2.5], np.float32), "a": 3}),
    "p": (
        table(sampler={"kind": "prioritized", "priority_exponent": 0.8}, max_times_sampled=3),
        {"x": 2},
    ),
    "r": (
        table(
            rate_limiter={
                "kind": "sample_to_insert_ratio",
                "samples_per_insert": 1.0,
                "min_size_to_sample": 1,
                "error_buffer": 10.0,
            }
        ),
        {"x": 3},
    ),
}
NAMES = [*TABLES, "nope"]


class Replay:
    """The state checks of every case, over a plain HTTP client."""

    def __init__(self, url: str, backend: str, logs: LogWatch) -> None:
        self.url, self.backend, self.logs = url, backend, logs
        self.http = httpx.Client(base_url=url, timeout=10)
        for name, (config, item) in TABLES.items():
            assert self.http.put(f"/tables/{name}", json=config).status_code == 200
            body = codec.encode({"items": [{"data": item}]})
            response = self.http.post(f"/tables/{name}/insert", content=body, headers=MSGPACK)
            assert response.status_code == 200, response.text
        self.last = self.snapshot()

    def snapshot(self) -> Any:
        response = self.http.get("/tables")
        assert response.status_code == 200, response.text[:300]
        return response.json()

    def check(self, response: Any) -> int:
        status = response.status_code
        assert status < 500, f"{status}: {response.content[:300]!r}"
        now = self.snapshot()
        if status >= 400:
            assert now == self.last, f"a refused request ({status}) changed the tables"
        else:
            for info in now:
                assert self.http.get(f"/tables/{info['name']}").status_code == 200
                if info["size"]:
                    body = codec.encode({"batch_size": 1, "timeout_ms": 0})
                    sampled = self.http.post(
                        f"/tables/{info['name']}/sample", content=body, headers=MSGPACK
                    )
                    assert sampled.status_code in (200, 429), sampled.content[:300]
                    if sampled.status_code == 200:
                        codec.decode(sampled.content)
            now = self.snapshot()
        self.logs.assert_clean()
        self.last = now
        return status


@pytest.fixture(params=["memory", "redis"])
def replay(request: pytest.FixtureRequest) -> Iterator[Replay]:
    redis_url = request.getfixturevalue("redis_url") if request.param == "redis" else None
    settings = Settings(
        host="127.0.0.1",
        port=free_port(),
        redis_url=redis_url,
        rlfleet_token=None,
        seed=5,
        max_wait_ms=50,  # a case's long-poll ends at once, whatever its timeout_ms
        max_body_bytes=1 << 20,
    )
    server = ServerThread(settings)  # configures uvicorn's logging: watch after it
    with watch_logs() as logs, server:
        yield Replay(server.url, request.param, logs)


def test_replay_openapi(replay: Replay) -> None:
    for operation, modes in operations(create_app(Settings()).openapi()):
        for mode in modes:
            cases = operation.as_strategy(generation_mode=mode)
            if "{name}" in operation.path:
                cases |= st.one_of(
                    *(
                        operation.as_strategy(generation_mode=mode, path_parameters={"name": n})
                        for n in NAMES
                    )
                )
            endpoint = f"replay[{replay.backend}] {operation.method.upper()} {operation.path} ({mode.value})"
            fuzz(endpoint, cases, lambda case: replay.check(call(case, replay.url)))


BULK = {"insert": insert_bodies, "sample": sample_bodies, "priorities": priorities_bodies}


@pytest.mark.parametrize("op", BULK)
def test_replay_msgpack_and_json_bodies(replay: Replay, op: str) -> None:
    def post(content_type: str) -> Any:
        def check(case: tuple[str, bytes]) -> int:
            name, body = case
            headers = {"Content-Type": content_type}
            return replay.check(
                replay.http.post(f"/tables/{name}/{op}", content=body, headers=headers)
            )

        return check

    names = st.sampled_from(NAMES)
    endpoint = f"replay[{replay.backend}] POST /tables/{{name}}/{op}"
    fuzz(
        f"{endpoint} (msgpack bodies)", st.tuples(names, packed(BULK[op])), post(codec.CONTENT_TYPE)
    )
    fuzz(f"{endpoint} (JSON bodies)", st.tuples(names, json_texts()), post("application/json"))
