"""The token on every route of the three services (issue 9, "Security"): every route of each app,
read from the app itself, answers 401 without the token, but /healthz and /metrics. In process
(httpx.ASGITransport, no lifespan: the token is checked before any route runs)."""

from __future__ import annotations

import re

import httpx
import pytest
from fastapi import FastAPI
from pydantic import SecretStr

from services.actor.app import create_app as create_actor
from services.actor.settings import ActorSettings
from services.http import OPEN_PATHS
from services.learner.app import create_app as create_learner
from services.learner.settings import LearnerSettings
from services.replay.app import create_app as create_replay
from services.replay.settings import Settings as ReplaySettings

TOKEN = "tok-3f9c1"
NOWHERE = "http://127.0.0.1:9"


def apps() -> dict[str, FastAPI]:
    return {
        "replay": create_replay(ReplaySettings(rlfleet_token=TOKEN, redis_url=None)),
        "learner": create_learner(
            LearnerSettings(
                replay_url=NOWHERE, rlfleet_token=TOKEN, agent_config={"hidden_sizes": [8]}
            )
        ),
        "actor": create_actor(
            ActorSettings(learner_url=NOWHERE, replay_url=NOWHERE, rlfleet_token=TOKEN)
        ),
    }


@pytest.mark.parametrize("service", ["replay", "learner", "actor"])
async def test_every_route_but_health_and_metrics_needs_the_token(service: str) -> None:
    app = apps()[service]
    documented = {(path, m.upper()) for path, ops in app.openapi()["paths"].items() for m in ops}
    plain = {(r.path, m) for r in app.routes for m in getattr(r, "methods", None) or ()}
    routes = {(re.sub(r"\{[^}]+\}", "t", path), m) for path, m in documented | plain}
    assert {"/docs", "/openapi.json", "/healthz", "/metrics", "/status"} <= {p for p, _ in routes}
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://svc") as client:
        for path, method in sorted(routes):
            if path in OPEN_PATHS or method == "HEAD":
                continue
            for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
                response = await client.request(method, path, headers=headers, content=b"{}")
                assert response.status_code == 401, (service, method, path, headers)
                assert response.headers["www-authenticate"] == "Bearer"


def test_the_token_is_a_secret_in_every_settings() -> None:
    for settings in (
        ReplaySettings(rlfleet_token=TOKEN),
        ActorSettings(rlfleet_token=TOKEN),
    ):
        assert isinstance(settings.rlfleet_token, SecretStr) and settings.token == TOKEN
        assert TOKEN not in repr(settings) and TOKEN not in str(settings.model_dump())
