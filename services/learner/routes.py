"""HTTP routes of the learner (CONTRACT.md, "Learner service"); they only translate HTTP."""

from __future__ import annotations

import json
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Depends, Header, HTTPException, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from services.http import inline_refs
from services.learner.counters import EpisodeCounters
from services.learner.loop import LearnerLoop
from shared import codec, limits


def get_loop(request: Request) -> LearnerLoop:
    return request.app.state.loop


def get_counters(request: Request) -> EpisodeCounters:
    return request.app.state.counters


Loop = Annotated[LearnerLoop, Depends(get_loop)]
Counters = Annotated[EpisodeCounters, Depends(get_counters)]

router = APIRouter()
open_router = APIRouter()


class Episode(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    return_: float = Field(alias="return", allow_inf_nan=False, description="Undiscounted return")
    length: int = Field(ge=0, description="Steps in the episode")


class EpisodeReport(BaseModel):
    """The body of ``POST /episodes`` (msgpack or JSON)."""

    model_config = ConfigDict(extra="ignore")

    actor_id: str = Field(min_length=1, max_length=256)
    steps: int = Field(ge=0, le=2**40, description="Environment steps since the last report")
    episodes: list[Episode] = Field(default_factory=list, max_length=100_000)
    evaluation: bool = Field(default=False, description="Evaluation episodes (greedy policy)")


_EPISODES_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": inline_refs(EpisodeReport.model_json_schema(by_alias=True))
            },
            codec.CONTENT_TYPE: {
                "schema": inline_refs(EpisodeReport.model_json_schema(by_alias=True))
            },
        },
    }
}


@router.get("/config", summary="The experiment: what actors need to start")
async def get_config(request: Request) -> dict[str, Any]:
    return request.app.state.experiment.describe()


@router.get(
    "/params",
    summary="The latest parameters (msgpack {version, params}); 304 for If-None-Match",
    response_class=Response,
    responses={200: {"content": {codec.CONTENT_TYPE: {}}}, 304: {"description": "Unchanged"}},
)
async def get_params(loop: Loop, if_none_match: Annotated[str | None, Header()] = None) -> Response:
    published = loop.published
    if published is None:
        raise HTTPException(503, "no parameters published yet; retry shortly")
    headers = {"ETag": published.etag, "Cache-Control": "no-cache"}
    if if_none_match is not None and _matches(if_none_match, published.etag):
        return Response(status_code=304, headers=headers)
    return Response(published.body, media_type=codec.CONTENT_TYPE, headers=headers)


def _matches(if_none_match: str, etag: str) -> bool:
    tags = [t.strip().removeprefix("W/") for t in if_none_match.split(",")]
    return "*" in tags or etag in tags


@router.post(
    "/episodes", summary="Actors report steps and finished episodes", openapi_extra=_EPISODES_BODY
)
async def post_episodes(request: Request, loop: Loop, counters: Counters) -> dict[str, Any]:
    report = await _read_report(request)
    await loop.reports.record(
        report.actor_id,
        report.steps,
        [e.return_ for e in report.episodes],
        evaluation=report.evaluation,
    )
    return {"actor_steps": counters.actor_steps, "episodes": counters.episodes}


async def _read_report(request: Request) -> EpisodeReport:
    body = await request.body()  # held to MAX_BODY_BYTES and BODY_TIMEOUT_S (services.http)
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type in (codec.CONTENT_TYPE, "application/x-msgpack"):
        data = _plain(codec.decode(body))  # DecodeError -> 422 (app handler)
    elif content_type == "application/json":
        data = limits.loads_json(body)  # DecodeError -> 422 (app handler)
    else:
        raise HTTPException(
            415,
            f"Content-Type must be application/msgpack or application/json, not {content_type!r}",
        )
    try:
        return EpisodeReport.model_validate(data)
    except ValidationError as e:
        reasons = "; ".join(
            f"{'/'.join(map(str, err['loc'])) or 'body'}: {err['msg']}" for err in e.errors()
        )
        raise HTTPException(422, f"invalid episode report: {reasons}") from e


def _plain(nest: Any) -> Any:
    """0-d arrays (numpy scalars on the wire) become Python scalars for validation."""
    if isinstance(nest, dict):
        return {k: _plain(v) for k, v in nest.items()}
    if isinstance(nest, list):
        return [_plain(v) for v in nest]
    if isinstance(nest, np.ndarray) and nest.ndim == 0:
        return nest.item()
    return nest


@router.get("/status", summary="What the learner is doing (CONTRACT.md fields and more)")
async def get_status(request: Request, loop: Loop, counters: Counters) -> dict[str, Any]:
    experiment = request.app.state.experiment
    return {
        "agent": experiment.agent_name,
        "env_id": experiment.env_id,
        **loop.status(),
        "actor_steps": counters.actor_steps,
        "episodes": counters.episodes,
        "eval_episodes": counters.eval_episodes,
        "return_mean_100": counters.return_mean_100,
        "eval_return_mean": counters.eval_return_mean,
        "actors": counters.actors_status(),
    }


@open_router.get("/healthz", summary="200 while training runs; 503 with the reason otherwise")
async def healthz(request: Request) -> Response:
    loop: LearnerLoop | None = getattr(request.app.state, "loop", None)
    ok, detail = (False, "starting") if loop is None else loop.healthy
    if ok:
        return Response(json.dumps({"status": "ok"}), media_type="application/json")
    return Response(json.dumps({"detail": detail}), 503, media_type="application/json")


@open_router.get("/metrics", summary="Prometheus text format", response_class=Response)
async def metrics(request: Request) -> Response:
    loop: LearnerLoop | None = getattr(request.app.state, "loop", None)
    if loop is not None:
        loop.refresh_metrics()
    return Response(
        generate_latest(request.app.state.metrics.registry), media_type=CONTENT_TYPE_LATEST
    )
