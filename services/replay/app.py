"""The replay service's FastAPI app: ``create_app(settings)``; nothing is built at import time."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from services.http import BearerAuth, BodyLimits
from services.replay import routes
from services.replay.metrics import ReplayMetrics
from services.replay.settings import Settings
from services.replay.storage import make_store
from services.replay.table import Tables
from shared.errors import DecodeError, RateLimited, ServiceError


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    metrics = ReplayMetrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        store = make_store(settings.redis_url, seed=settings.seed)
        await store.open()
        app.state.tables = Tables(
            store,
            metrics,
            max_answer_bytes=settings.max_body_bytes,
            max_waiters=settings.max_waiters,
            max_wait_ms=settings.max_wait_ms,
        )
        try:
            yield
        finally:
            app.state.tables.begin_shutdown()
            await store.close()

    app = FastAPI(
        title="rlfleet replay",
        description="Reverb-style replay tables over HTTP; see docs/replay.md.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.started = time.time()
    app.state.backend = "redis" if settings.redis_url else "memory"
    app.include_router(routes.router)
    app.router.routes[:0] = routes.BULK_ROUTES  # matched first: see routes.py
    app.add_exception_handler(ServiceError, _service_error)
    app.add_exception_handler(DecodeError, _decode_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    if settings.redis_url:
        import redis.exceptions

        app.add_exception_handler(redis.exceptions.ConnectionError, _store_down)
        app.add_exception_handler(redis.exceptions.TimeoutError, _store_down)
    app.add_middleware(
        BodyLimits, max_body_bytes=settings.max_body_bytes, body_timeout_s=settings.body_timeout_s
    )
    app.add_middleware(Guard, metrics=metrics)  # the latency includes reading the body
    app.add_middleware(BearerAuth, token=settings.token)  # outermost: runs first
    return app


async def _service_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ServiceError)
    headers = None
    if isinstance(exc, RateLimited):
        headers = {"Retry-After": str(max(1, round(exc.retry_after or 1)))}
    return JSONResponse({"detail": exc.detail}, status_code=exc.status_code or 500, headers=headers)


async def _decode_error(request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse({"detail": f"malformed body: {exc}"}, status_code=422)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    reasons = "; ".join(
        f"{'/'.join(map(str, e.get('loc', ())))}: {e.get('msg')}" for e in exc.errors()
    )
    return JSONResponse({"detail": reasons}, status_code=422)


async def _store_down(request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse({"detail": f"the table store does not answer: {exc}"}, status_code=503)


class Guard:
    """Pure ASGI middleware: request latency, by method and endpoint."""

    def __init__(self, app: ASGIApp, *, metrics: ReplayMetrics) -> None:
        self.app = app
        self.latency = metrics.latency
        self._timers: dict[tuple[str, str], Any] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        try:
            await self.app(scope, receive, send)
        finally:
            key = (scope["method"], getattr(scope.get("endpoint"), "__name__", "other"))
            timer = self._timers.get(key)
            if timer is None:
                timer = self._timers[key] = self.latency.labels(*key)
            timer.observe(time.perf_counter() - start)
