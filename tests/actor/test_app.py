"""The actor app in process (httpx.ASGITransport, lifespan run): routes, auth, failure states."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest
from fastapi import FastAPI
from pydantic import ValidationError

from services.actor.app import create_app
from services.actor.settings import ActorSettings
from tests.actor.support import serve
from tests.support import free_port


async def poll(client: httpx.AsyncClient, predicate, headers=None, timeout_s: float = 10.0) -> dict:
    async with asyncio.timeout(timeout_s):
        while True:
            status = (await client.get("/status", headers=headers)).json()
            if predicate(status):
                return status
            await asyncio.sleep(0.05)


async def test_waits_for_the_learner_with_auth_on_status():
    nowhere = f"http://127.0.0.1:{free_port()}"
    settings = ActorSettings(
        learner_url=nowhere, replay_url=nowhere, actor_id="a1", rlfleet_token="tok"
    )
    app = create_app(settings)
    auth = {"Authorization": "Bearer tok"}
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://actor") as client:
            assert (await client.get("/healthz")).json() == {"status": "ok"}
            refused = await client.get("/status")
            assert refused.status_code == 401
            assert "Bearer" in refused.json()["detail"]
            assert (
                await client.get("/status", headers={"Authorization": "Bearer no"})
            ).status_code == 401
            status = await poll(client, lambda s: s["last_error"] is not None, auth)
            assert status["state"] == "waiting_for_learner"
            assert status["actor_id"] == "a1"
            assert status["steps"] == 0 and status["param_version"] is None
            metrics = await client.get("/metrics")
            assert metrics.status_code == 200
            assert 'rlfleet_actor_steps_total{actor_id="a1",role="actor"} 0.0' in metrics.text
        started = time.monotonic()
    assert time.monotonic() - started < 5  # the lifespan exit is prompt


async def test_an_unsupported_agent_fails_the_actor_with_the_reason():
    learner = FastAPI()

    @learner.get("/config")
    async def config() -> dict:
        return {"agent": "no_such_agent", "agent_config": {}, "env_id": "CartPole-v1", "seed": 0}

    async with serve(learner) as learner_url:
        app = create_app(ActorSettings(learner_url=learner_url, replay_url=learner_url))
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://actor") as client:
                status = await poll(client, lambda s: s["state"] == "failed")
                assert "no_such_agent" in status["last_error"]
                health = await client.get("/healthz")
                assert health.status_code == 503
                assert "no_such_agent" in health.json()["detail"]


def test_settings_refuse_an_actor_index_out_of_range():
    with pytest.raises(ValidationError, match="ACTOR_INDEX"):
        ActorSettings(actor_index=2, num_actors=2)
