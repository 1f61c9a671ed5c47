"""The learner service: ``create_app(settings)`` builds the FastAPI app; nothing happens at import.

The lifespan builds the experiment (agent config, network, initial state), resumes from the newest
checkpoint, publishes the parameters, starts the training loop, and on shutdown stops the loop
and writes a final checkpoint.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import gymnasium
import jax
import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from services.http import BearerAuth
from services.learner.checkpoint import Checkpointer
from services.learner.counters import EpisodeCounters
from services.learner.logs import MetricsLogger, PrometheusMetrics
from services.learner.loop import LearnerLoop
from services.learner.routes import open_router, router
from services.learner.settings import LearnerSettings
from shared.clients import ReplayClient, make_http_client
from shared.errors import DecodeError, ServiceError

log = logging.getLogger("rlfleet.learner")


@dataclass(frozen=True)
class Experiment:
    """What ``GET /config`` tells actors, and what the loop trains."""

    agent: str
    env_id: str
    seed: int
    config: Any  # the agent's config dataclass
    obs_dim: int
    num_actions: int
    tables: dict[str, dict[str, Any]]
    learner: Any
    initial_state: Any

    def describe(self) -> dict[str, Any]:
        return {
            "agent": self.agent,
            "agent_config": self.config.to_dict(),
            "env_id": self.env_id,
            "seed": self.seed,
            "tables": self.tables,
            "obs_dim": self.obs_dim,
            "num_actions": self.num_actions,
        }


def build_experiment(settings: LearnerSettings) -> Experiment:
    """The agent's config, network and initial training state for ``settings`` (slow: jit)."""
    from shared.agents.dqn import learning, networks

    config = settings.make_agent_config()
    env = gymnasium.make(settings.env_id)
    obs_space, action_space = env.observation_space, env.action_space
    env.close()
    if not isinstance(action_space, gymnasium.spaces.Discrete):
        raise ValueError(f"{settings.env_id} has {action_space}; the dqn agent needs Discrete")
    if not isinstance(obs_space, gymnasium.spaces.Box):
        raise ValueError(f"{settings.env_id} has {obs_space}; the dqn agent needs a Box")
    obs_dim = int(np.prod(obs_space.shape))
    num_actions = int(action_space.n)
    network = networks.make_network(config, num_actions)
    learner = learning.make_learner(config, network)
    # one compiled init is faster than its many eager ops (obs_dim is a shape: static)
    state = jax.jit(learner.init, static_argnums=1)(jax.random.PRNGKey(settings.seed), obs_dim)
    return Experiment(
        agent=settings.agent,
        env_id=settings.env_id,
        seed=settings.seed,
        config=config,
        obs_dim=obs_dim,
        num_actions=num_actions,
        tables={config.table_name: config.replay_table_config(obs_dim)},
        learner=learner,
        initial_state=state,
    )


def create_app(settings: LearnerSettings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        experiment = await asyncio.to_thread(build_experiment, settings)
        checkpointer = (
            Checkpointer(settings.checkpoint_dir, keep=settings.checkpoint_keep)
            if settings.checkpoint_dir is not None
            else None
        )
        logger = MetricsLogger(settings.run_dir) if settings.run_dir is not None else None
        http = make_http_client(settings.replay_url, token=settings.token)
        counters = EpisodeCounters()
        loop = LearnerLoop(
            learner=experiment.learner,
            state=experiment.initial_state,
            agent=experiment.agent,
            env_id=experiment.env_id,
            agent_config=experiment.config,
            tables=experiment.tables,
            replay=ReplayClient(http),
            counters=counters,
            metrics=app.state.metrics,
            checkpointer=checkpointer,
            checkpoint_every_s=settings.checkpoint_every_s,
            logger=logger,
            prefetch=settings.sample_prefetch,
            batches_per_sample=settings.sample_batches(),
            sampler_process=settings.sample_process,
            token=settings.token,
        )
        try:
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
    app.add_middleware(BearerAuth, token=settings.token)
    return app


async def _service_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ServiceError)
    return JSONResponse({"detail": exc.detail}, status_code=exc.status_code or 500)


async def _decode_error(request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse({"detail": f"body is not valid rlfleet MessagePack: {exc}"}, 422)
