"""The learner service: ``create_app(settings)`` builds the FastAPI app; nothing happens at import.

The settings hold the experiment (the agent, its config and the env's spec, checked at start);
the lifespan builds the training state (slow: jit), resumes from the newest checkpoint,
publishes the parameters, starts the training loop, and on shutdown stops the loop and writes a
final checkpoint.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from services.http import BearerAuth, BodyLimits
from services.learner.checkpoint import Checkpointer
from services.learner.counters import EpisodeCounters
from services.learner.logs import MetricsLogger, PrometheusMetrics
from services.learner.loop import LearnerLoop
from services.learner.routes import open_router, router
from services.learner.settings import LearnerSettings
from shared.clients import ReplayClient, make_http_client
from shared.errors import DecodeError, ServiceError

log = logging.getLogger("rlfleet.learner")


def create_app(settings: LearnerSettings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        experiment = settings.experiment
        checkpointer = (
            Checkpointer(settings.checkpoint_dir, keep=settings.checkpoint_keep)
            if settings.checkpoint_dir is not None
            else None
        )
        logger = MetricsLogger(settings.run_dir) if settings.run_dir is not None else None
        http = make_http_client(settings.replay_url, token=settings.token)
        counters = EpisodeCounters()
        try:
            loop = await asyncio.to_thread(
                LearnerLoop,  # initializes the training state: jit, off the event loop
                experiment=experiment,
                replay=ReplayClient(http),
                counters=counters,
                metrics=app.state.metrics,
                checkpointer=checkpointer,
                checkpoint_every_s=settings.checkpoint_every_s,
                logger=logger,
                prefetch=settings.sample_prefetch,
                sampler_process=settings.sample_process,
                token=settings.token,
            )
            await asyncio.to_thread(loop.resume)
            app.state.experiment = experiment
            app.state.counters = counters
            app.state.loop = loop
            loop.start()
            try:
                yield
            finally:
                await loop.stop()
        finally:
            await http.close()
            if logger is not None:
                logger.close()

    app = FastAPI(
        title="rlfleet learner",
        summary="Trains the agent on replay batches and publishes its parameters to actors.",
        version="1",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.metrics = PrometheusMetrics()
    app.include_router(open_router)
    app.include_router(router)
    app.add_exception_handler(ServiceError, _service_error)
    app.add_exception_handler(DecodeError, _decode_error)
    app.add_middleware(
        BodyLimits, max_body_bytes=settings.max_body_bytes, body_timeout_s=settings.body_timeout_s
    )
    app.add_middleware(BearerAuth, token=settings.token)  # outermost: runs first
    return app


async def _service_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ServiceError)
    return JSONResponse({"detail": exc.detail}, status_code=exc.status_code or 500)


async def _decode_error(request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse({"detail": f"invalid body: {exc}"}, 422)
