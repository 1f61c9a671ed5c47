"""Fuzzing the actor: schemathesis against its OpenAPI schema (every endpoint) and bodies sent to
routes that take none. The learner's fuzzing shares the learner of tests/learner/test_routes.py
(``test_fuzz_every_endpoint``): starting one costs a jit.

For every case: no 5xx (but ``/healthz``'s documented 503 while what it needs cannot be reached),
nothing logged with a traceback, and the status still readable.
"""

from __future__ import annotations

from typing import Any

import httpx

from services.actor.app import create_app as create_actor
from services.actor.settings import ActorSettings
from tests.fuzz.harness import call, fuzz, nests, operations, packed, status_ok, watch_logs
from tests.learner.support import serve_app, unreachable_replay


def test_actor() -> None:
    nowhere = unreachable_replay()
    app = create_actor(ActorSettings(learner_url=nowhere, replay_url=nowhere, actor_id="fuzz"))
    with serve_app(app) as url, watch_logs() as logs:
        http = httpx.Client(base_url=url, timeout=10)

        def check(response: Any) -> int:
            status_ok(response)
            assert http.get("/status").status_code == 200
            logs.assert_clean()
            return response.status_code

        for operation, modes in operations(app.openapi()):
            for mode in modes:
                endpoint = f"actor {operation.method.upper()} {operation.path} ({mode.value})"
                fuzz(
                    endpoint,
                    operation.as_strategy(generation_mode=mode),
                    lambda case: check(call(case, url)),
                )
        for method in ("POST", "PUT", "DELETE"):  # no such routes: 405, whatever the body
            fuzz(
                f"actor {method} /status (msgpack bodies)",
                packed(nests),
                lambda body, method=method: check(http.request(method, "/status", content=body)),
            )
