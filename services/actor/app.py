"""The actor service: ``create_app(settings)``; acting runs as a background task of the lifespan.

Routes: ``GET /healthz``, ``GET /status`` (token-protected when RLFLEET_TOKEN is set),
``GET /metrics`` (Prometheus, one registry per app).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from services.actor.loop import ActorRuntime
from services.actor.settings import ActorSettings
from services.http import DEFAULT_BODY_TIMEOUT_S, BearerAuth, BodyLimits

_COUNTERS = {
    "steps": "Env steps taken (all envs counted).",
    "episodes": "Episodes finished.",
    "inserted_items": "Replay items stored.",
    "rate_limited": "Insert requests answered 429 by the rate limiter (back-pressure).",
    "insert_retries": "Insert requests sent again after a connection failure or 5xx.",
    "dropped_items": "Items given up at shutdown.",
    "acting_blocked_s": "Seconds acting waited for room in the insert queue (back-pressure).",
    "params_fetched": "Parameter pulls that brought a new version.",
    "params_not_modified": "Parameter pulls answered 304.",
}
_GAUGES = {
    "steps_per_s": "Env steps per second over the last report period.",
    "param_version": "Version of the parameters the policy uses.",
    "pending_items": "Items formed but not yet stored in replay.",
    "unreported_episodes": "Finished episodes not yet reported to the learner.",
}


class _StatusCollector:
    """Reads the runtime's status at scrape time."""

    def __init__(self, runtime: ActorRuntime) -> None:
        self._runtime = runtime

    def collect(self) -> Iterator[Metric]:
        status = self._runtime.status()
        labels = {"actor_id": status["actor_id"], "role": status["role"]}
        for name, help_text in _COUNTERS.items():
            family = CounterMetricFamily(f"rlfleet_actor_{name}", help_text, labels=list(labels))
            family.add_metric(list(labels.values()), float(status[name] or 0))
            yield family
        for name, help_text in _GAUGES.items():
            family = GaugeMetricFamily(f"rlfleet_actor_{name}", help_text, labels=list(labels))
            value = status[name]
            family.add_metric(list(labels.values()), float("nan") if value is None else value)
            yield family


def get_runtime(request: Request) -> ActorRuntime:
    return request.app.state.runtime


Runtime = Annotated[ActorRuntime, Depends(get_runtime)]


def create_app(settings: ActorSettings | None = None) -> FastAPI:
    settings = settings or ActorSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime = ActorRuntime(settings)
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_StatusCollector(runtime))
        app.state.runtime, app.state.registry = runtime, registry
        runtime.start()
        try:
            yield
        finally:
            await runtime.stop()

    app = FastAPI(
        title="rlfleet actor",
        description="Acts in vectorized gymnasium envs with the learner's policy; writes replay.",
        lifespan=lifespan,
    )
    # No route takes a body: anything sent is held to a small limit before the 405.
    app.add_middleware(BodyLimits, max_body_bytes=64 * 1024, body_timeout_s=DEFAULT_BODY_TIMEOUT_S)
    app.add_middleware(BearerAuth, token=settings.token)

    @app.get("/healthz")
    async def healthz(runtime: Runtime) -> Any:
        if runtime.state == "failed":
            return JSONResponse(
                {"detail": f"the actor failed: {runtime.last_error}"}, status_code=503
            )
        return {"status": "ok"}

    @app.get("/status")
    async def status(runtime: Runtime) -> dict[str, Any]:
        return runtime.status()

    @app.get("/metrics")
    async def metrics(request: Request) -> Response:
        return Response(generate_latest(request.app.state.registry), media_type=CONTENT_TYPE_LATEST)

    return app
