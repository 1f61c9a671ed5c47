"""Typed async clients for the replay and learner services.

Each client wraps an injected ``httpx.AsyncClient`` (point it at a real server or, in tests, at an
ASGI app through ``httpx.ASGITransport``). Method names follow the routes:
``ReplayClient.insert`` <-> ``POST /tables/{name}/insert``. Every blocking call takes an explicit
timeout. Connection failures are retried with exponential backoff; HTTP errors never are: they are
raised as the typed errors of ``shared.errors``.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import numpy as np

from shared import codec
from shared.errors import ConnectionFailed, RateLimited, error_for_status

KEEPALIVE_EXPIRY_S = 3.0
_MSGPACK = {"Content-Type": codec.CONTENT_TYPE, "Accept": codec.CONTENT_TYPE}


def make_http_client(
    base_url: str, *, token: str | None = None, timeout: float = 30.0, **kwargs: Any
) -> httpx.AsyncClient:
    """An ``httpx.AsyncClient`` on the aiohttp transport (1.8-2.4x httpx's own on small bodies: bench.replay)."""
    from httpx_aiohttp import AiohttpTransport

    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.AsyncClient(
        base_url=base_url,
        headers=headers,
        timeout=timeout,
        # Expire idle connections before uvicorn's keep-alive (5 s) closes them under us.
        transport=AiohttpTransport(limits=httpx.Limits(keepalive_expiry=KEEPALIVE_EXPIRY_S)),
        **kwargs,
    )


class _ServiceClient:
    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        connect_retries: int = 5,
        backoff_s: float = 0.1,
        max_backoff_s: float = 5.0,
    ) -> None:
        self._http = http
        self._connect_retries = connect_retries
        self._backoff_s = backoff_s
        self._max_backoff_s = max_backoff_s

    @property
    def http(self) -> httpx.AsyncClient:
        return self._http

    async def _request(
        self,
        method: str,
        url: str,
        *,
        msgpack_body: Any = None,
        json_body: Any = None,
        headers: dict[str, str] | None = None,
        timeout: float | None = None,
    ) -> httpx.Response:
        content = None
        all_headers = dict(headers or {})
        if msgpack_body is not None:
            content = codec.encode(msgpack_body)
            all_headers.update(_MSGPACK)
        elif json_body is not None:
            content = json.dumps(json_body).encode()
            all_headers["Content-Type"] = "application/json"
        request_timeout = httpx.USE_CLIENT_DEFAULT if timeout is None else timeout
        delay = self._backoff_s
        for attempt in range(self._connect_retries + 1):
            try:
                response = await self._http.request(
                    method, url, content=content, headers=all_headers, timeout=request_timeout
                )
                break
            except (
                httpx.ConnectError,
                httpx.ConnectTimeout,  # the aiohttp transport maps dropped connections to this
                httpx.RemoteProtocolError,
                httpx.ReadError,
            ) as e:
                # Nothing reached the handler (connect) or the connection dropped; inserts are
                # atomic on the server, so a retry cannot store an item twice unless the first
                # attempt had already been applied, which a dropped answer cannot tell us.
                if attempt == self._connect_retries:
                    raise ConnectionFailed(
                        f"{method} {url}: {e!r} after {attempt + 1} tries"
                    ) from e
                await asyncio.sleep(delay * (0.5 + random.random()))
                delay = min(delay * 2, self._max_backoff_s)
        if response.status_code >= 400 and response.status_code != 304:
            raise _error_from(response)
        return response


def _error_from(response: httpx.Response) -> Exception:
    try:
        detail = response.json().get("detail", response.text)
    except (ValueError, AttributeError):
        detail = response.text
    if not isinstance(detail, str):
        detail = json.dumps(detail)
    error = error_for_status(response.status_code, detail)
    if isinstance(error, RateLimited):
        retry_after = response.headers.get("Retry-After")
        error.retry_after = float(retry_after) if retry_after else None
    return error


@dataclass(frozen=True)
class SampleBatch:
    """One sampled batch: ``data`` is a nest with a leading batch axis."""

    keys: np.ndarray  # (batch,) uint64 keys
    probabilities: np.ndarray  # (batch,)
    priorities: np.ndarray  # (batch,)
    times_sampled: np.ndarray  # (batch,)
    table_size: int
    data: Any


class ReplayClient(_ServiceClient):
    """Client of the replay service (Reverb-like tables over HTTP)."""

    async def create_table(self, name: str, config: dict[str, Any]) -> dict[str, Any]:
        """``PUT /tables/{name}``: creates the table, or checks that it has the same config."""
        response = await self._request("PUT", f"/tables/{name}", json_body=config)
        return response.json()

    async def insert(
        self,
        table: str,
        *,
        data: Any,
        priorities: Sequence[float] | np.ndarray | float = 1.0,
        timeout_s: float = 5.0,
    ) -> list[int]:
        """Inserts a batch of items atomically; ``data`` is a nest with a leading batch axis.

        Waits up to ``timeout_s`` for the rate limiter; raises ``RateLimited`` if it does not admit
        the batch by then (nothing was stored).
        """
        if np.isscalar(priorities):
            first = next(leaf for leaf in _leaves(data))
            priorities = np.full(len(first), float(priorities))
        body = {
            "columns": data,
            "priorities": np.asarray(priorities, dtype=np.float64),
            "timeout_ms": int(timeout_s * 1000),
        }
        response = await self._request(
            "POST", f"/tables/{table}/insert", msgpack_body=body, timeout=timeout_s + 30.0
        )
        return codec.decode(response.content)["keys"]

    async def insert_items(
        self, table: str, items: Sequence[dict[str, Any]], *, timeout_s: float = 5.0
    ) -> list[int]:
        """Inserts ``[{"data": nest, "priority": p}, ...]`` in the contract's per-item form."""
        body = {"items": list(items), "timeout_ms": int(timeout_s * 1000)}
        response = await self._request(
            "POST", f"/tables/{table}/insert", msgpack_body=body, timeout=timeout_s + 30.0
        )
        return codec.decode(response.content)["keys"]

    async def sample(self, table: str, batch_size: int, *, timeout_s: float = 5.0) -> SampleBatch:
        """Samples ``batch_size`` items atomically, waiting up to ``timeout_s`` for the limiter."""
        body = {"batch_size": batch_size, "timeout_ms": int(timeout_s * 1000)}
        response = await self._request(
            "POST", f"/tables/{table}/sample", msgpack_body=body, timeout=timeout_s + 30.0
        )
        out = codec.decode(response.content)
        return SampleBatch(
            keys=np.asarray(out["keys"], dtype=np.uint64),
            probabilities=np.asarray(out["probabilities"], dtype=np.float64),
            priorities=np.asarray(out["priorities"], dtype=np.float64),
            times_sampled=np.asarray(out["times_sampled"], dtype=np.int64),
            table_size=int(out["table_size"]),
            data=out["data"],
        )

    async def update_priorities(
        self,
        table: str,
        *,
        keys: Sequence[int] | np.ndarray = (),
        priorities: Sequence[float] | np.ndarray = (),
        deletes: Sequence[int] | np.ndarray = (),
    ) -> dict[str, int]:
        """``POST /tables/{name}/priorities``: new priorities for ``keys``, and deletions."""
        body = {
            "keys": [int(k) for k in keys],
            "priorities": [float(p) for p in priorities],
            "deletes": [int(k) for k in deletes],
        }
        response = await self._request("POST", f"/tables/{table}/priorities", msgpack_body=body)
        return codec.decode(response.content)

    async def reset(self, table: str) -> None:
        """Empties ``table`` and zeroes its counters."""
        await self._request("POST", f"/tables/{table}/reset")

    async def info(self, table: str | None = None) -> dict[str, Any]:
        """``GET /tables/{name}`` (or ``GET /tables`` for all tables)."""
        response = await self._request("GET", f"/tables/{table}" if table else "/tables")
        return response.json()

    async def status(self) -> dict[str, Any]:
        return (await self._request("GET", "/status")).json()


@dataclass(frozen=True)
class Params:
    version: int
    params: Any


class LearnerClient(_ServiceClient):
    """Client of the learner service: experiment config, parameters, episode reports."""

    async def config(self) -> dict[str, Any]:
        return (await self._request("GET", "/config")).json()

    async def params(
        self, *, if_newer_than: int | None = None, timeout_s: float = 30.0
    ) -> Params | None:
        """The latest parameters, or None when they are still at version ``if_newer_than``."""
        headers = {"Accept": codec.CONTENT_TYPE}
        if if_newer_than is not None:
            headers["If-None-Match"] = f'"{if_newer_than}"'
        response = await self._request("GET", "/params", headers=headers, timeout=timeout_s)
        if response.status_code == 304:
            return None
        out = codec.decode(response.content)
        return Params(version=int(out["version"]), params=out["params"])

    async def report_episodes(
        self,
        *,
        actor_id: str,
        steps: int,
        episodes: Sequence[dict[str, float]],
        evaluation: bool = False,
    ) -> None:
        """``POST /episodes``: steps taken and episodes finished since the last report."""
        body = {
            "actor_id": actor_id,
            "steps": int(steps),
            "episodes": [
                {"return": float(e["return"]), "length": int(e["length"])} for e in episodes
            ],
            "evaluation": evaluation,
        }
        await self._request("POST", "/episodes", msgpack_body=body)

    async def status(self) -> dict[str, Any]:
        return (await self._request("GET", "/status")).json()


def _leaves(nest: Any):
    if isinstance(nest, dict):
        for value in nest.values():
            yield from _leaves(value)
    elif isinstance(nest, list | tuple):
        for value in nest:
            yield from _leaves(value)
    else:
        yield nest
