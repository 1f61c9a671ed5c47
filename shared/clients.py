"""Typed async clients for the replay and learner services.

Each client wraps an injected ``aiohttp.ClientSession`` made by ``make_http_client`` (one per
service: its connection pool). Method names follow the routes:
``ReplayClient.insert`` <-> ``POST /tables/{name}/insert``. Every blocking call takes an explicit
timeout. Connection failures are retried with exponential backoff; HTTP errors never are: they are
raised as the typed errors of ``shared.errors``. ``request`` is the raw form (any status, no
raising), for tests and tools that look at the HTTP answer itself.

Why aiohttp rather than httpx for these clients: they carry the hot traffic (every insert, sample
and parameter pull), and httpx's own layers cost about 220-250 us of CPU per request on top of
aiohttp's 130-250 us (a 256-item insert: 454 us through httpx on the aiohttp transport, 253 us
here; bench.replay's "Client transport" table compares the two on every run). On two cores shared
by five processes that was a fifth of an actor's time per env step. httpx stays where its API is
worth more than that: the launcher's polling, and tests that drive an ASGI app in process.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import aiohttp
import numpy as np

from shared import codec
from shared.errors import ConnectionFailed, RateLimited, error_for_status

KEEPALIVE_EXPIRY_S = 3.0
_MSGPACK = {"Content-Type": codec.CONTENT_TYPE, "Accept": codec.CONTENT_TYPE}


def make_http_client(
    base_url: str, *, token: str | None = None, timeout: float = 30.0
) -> aiohttp.ClientSession:
    """A session for one service at ``base_url`` (a path prefix is kept); call inside a loop."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return aiohttp.ClientSession(
        base_url=base_url.rstrip("/") + "/",
        headers=headers,
        timeout=aiohttp.ClientTimeout(total=timeout),
        # Expire idle connections before uvicorn's keep-alive (5 s) closes them under us.
        connector=aiohttp.TCPConnector(keepalive_timeout=KEEPALIVE_EXPIRY_S),
        auto_decompress=False,
    )


@lru_cache(maxsize=64)
def _timeout(seconds: float) -> aiohttp.ClientTimeout:
    return aiohttp.ClientTimeout(total=seconds)


@dataclass(frozen=True, slots=True)
class Reply:
    """One HTTP answer, read whole."""

    status_code: int
    headers: Mapping[str, str]
    content: bytes

    def json(self) -> Any:
        return json.loads(self.content)

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", errors="replace")


class _ServiceClient:
    def __init__(
        self,
        http: aiohttp.ClientSession,
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
    def http(self) -> aiohttp.ClientSession:
        return self._http

    @property
    def base_url(self) -> str:
        return str(self._http._base_url).rstrip("/")

    async def request(
        self,
        method: str,
        path: str,
        *,
        content: bytes | None = None,
        json_body: Any = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> Reply:
        """One request, the answer whatever its status; connection failures are retried.

        ``path`` is relative to the service's base URL (a leading "/" is allowed).
        """
        if json_body is not None:
            content = json.dumps(json_body).encode()
            headers = {**(headers or {}), "Content-Type": "application/json"}
        url = path.lstrip("/")
        request_timeout = None if timeout is None else _timeout(timeout)
        delay = self._backoff_s
        for attempt in range(self._connect_retries + 1):
            try:
                async with self._http.request(
                    method, url, data=content, headers=headers, timeout=request_timeout
                ) as response:
                    body = await response.read()
                    return Reply(response.status, response.headers, body)
            except aiohttp.ClientConnectionError as e:
                # Nothing reached the handler (connect) or the connection dropped; inserts are
                # atomic on the server, so a retry cannot store an item twice unless the first
                # attempt had already been applied, which a dropped answer cannot tell us.
                if attempt == self._connect_retries:
                    raise ConnectionFailed(
                        f"{method} {path}: {e!r} after {attempt + 1} tries"
                    ) from e
            except TimeoutError as e:  # the service took longer than ``timeout``: not retried
                raise ConnectionFailed(f"{method} {path}: no answer in {timeout} s") from e
            await asyncio.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, self._max_backoff_s)
        raise AssertionError("unreachable")

    async def _request(
        self,
        method: str,
        path: str,
        *,
        msgpack_body: Any = None,
        json_body: Any = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> Reply:
        """``request``, with typed errors for every status >= 400 (but 304)."""
        content = None
        if msgpack_body is not None:
            content = codec.encode(msgpack_body)
            headers = {**(headers or {}), **_MSGPACK}
        response = await self.request(
            method, path, content=content, json_body=json_body, headers=headers, timeout=timeout
        )
        if response.status_code >= 400 and response.status_code != 304:
            raise _error_from(response)
        return response


def _error_from(response: Reply) -> Exception:
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
