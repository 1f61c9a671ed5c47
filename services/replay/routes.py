"""Thin HTTP routes over ``services.replay.table.Tables`` (see CONTRACT.md and docs/replay.md).

Bulk routes read the raw body and answer raw MessagePack (``shared.codec``): no pydantic on the
hot path. Status and configuration are JSON.
"""

from __future__ import annotations

import time
from typing import Annotated, Any

import msgpack
import numpy as np
from fastapi import APIRouter, Path, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import ValidationError
from starlette.routing import Route

from services.http import inline_refs
from services.replay.config import TableConfig
from services.replay.table import Tables
from shared import codec, limits
from shared.errors import InvalidRequest

router = APIRouter()
NewTableName = Annotated[str, Path(pattern=limits.TABLE_NAME)]
_PACKER = msgpack.Packer(use_bin_type=True, autoreset=True)

_MSGPACK_BODY = {
    "requestBody": {"content": {codec.CONTENT_TYPE: {"schema": {"type": "object"}}}},
}


_TABLE_CONFIG_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": inline_refs(TableConfig.model_json_schema())}},
    }
}


def _tables(request: Request) -> Tables:
    return request.app.state.tables


async def _decoded(request: Request) -> Any:
    raw = await request.body()
    if not raw:
        return {}
    if request.headers.get("content-type", "").startswith("application/json"):
        return limits.loads_json(raw)
    return codec.decode(raw)


def _answer(request: Request, out: dict[str, Any]) -> Response:
    """MessagePack, unless the caller asked for JSON only."""
    accept = request.headers.get("accept", "")
    if "application/json" in accept and codec.CONTENT_TYPE not in accept:
        return JSONResponse(_jsonable(out))
    return MsgpackResponse(_encode_map(out))


def _encode_map(out: dict[str, Any]) -> list[bytes | memoryview]:
    """``codec.encode_parts(out)`` for an answer whose only nest is ``data``: the plain values
    (lists of keys, priorities...) are packed in one C call each without looking at their items."""
    parts: list[bytes | memoryview] = [_PACKER.pack_map_header(len(out))]
    for key, value in out.items():
        parts.append(_PACKER.pack(key))
        if key == "data":
            parts.extend(codec.encode_parts(value))
        elif isinstance(value, np.ndarray):
            parts.append(_pack_list(value))
        else:
            parts.append(_PACKER.pack(value))
    return parts


_F64 = np.dtype([("tag", "u1"), ("value", ">f8")])  # MessagePack float 64: 0xcb + 8 bytes
_U64 = np.dtype([("tag", "u1"), ("value", ">u8")])  # MessagePack uint 64: 0xcf + 8 bytes


def _pack_list(values: np.ndarray) -> bytes:
    """A 1-d numeric array as a MessagePack list of numbers, built with numpy (not item by item).
    Every element takes the 9-byte float 64 or uint 64 form, which any decoder reads."""
    n = len(values)
    head = b"\xdc" + n.to_bytes(2, "big") if n < 2**16 else b"\xdd" + n.to_bytes(4, "big")
    if values.dtype.kind == "f":
        packed = np.empty(n, _F64)
        packed["tag"], packed["value"] = 0xCB, values
    elif values.dtype.kind in "iu" and not (values < 0).any():
        packed = np.empty(n, _U64)
        packed["tag"], packed["value"] = 0xCF, values
    else:
        return _PACKER.pack(values.tolist())
    return head + packed.tobytes()


class MsgpackResponse(Response):
    """A MessagePack body written as it was encoded: small parts joined, large array views sent
    as they are, so a batch of big items is not copied once more into one bytes object."""

    media_type = codec.CONTENT_TYPE
    _LARGE = 256 * 1024

    def __init__(self, parts: list[bytes | memoryview]) -> None:
        self.parts: list[bytes | memoryview] = []
        pending: list[bytes | memoryview] = []
        for part in parts:
            if len(part) >= self._LARGE:
                if pending:
                    self.parts.append(b"".join(pending))
                    pending = []
                self.parts.append(part)
            else:
                pending.append(part)
        if pending or not self.parts:
            self.parts.append(b"".join(pending))
        super().__init__(headers={"content-length": str(sum(map(len, self.parts)))})

    def init_headers(self, headers: Any = None) -> None:
        self.raw_headers = [
            (b"content-length", headers["content-length"].encode()),
            (b"content-type", self.media_type.encode()),
        ]

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await send(
            {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
        )
        last = len(self.parts) - 1
        for i, part in enumerate(self.parts):
            await send({"type": "http.response.body", "body": part, "more_body": i < last})


def _jsonable(x: Any) -> Any:
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_jsonable(v) for v in x]
    return x


@router.put("/tables/{name}", openapi_extra=_TABLE_CONFIG_BODY)
async def create_table(name: NewTableName, request: Request) -> dict[str, Any]:
    """Creates the table; the same config again is 200, a different one 409."""
    body = limits.loads_json(await request.body())
    max_item_bytes = request.app.state.settings.max_body_bytes
    try:
        config = TableConfig.model_validate(body, context={"max_item_bytes": max_item_bytes})
    except ValidationError as e:
        reasons = "; ".join(
            f"{'/'.join(map(str, err['loc'])) or 'body'}: {err['msg']}" for err in e.errors()
        )
        raise InvalidRequest(f"invalid table config: {reasons}") from e
    tables = _tables(request)
    created = await tables.create(name, config)
    return {"created": created, **await tables.info(name)}


@router.get("/tables")
async def list_tables(request: Request) -> list[dict[str, Any]]:
    tables = _tables(request)
    return [await tables.info(name) for name in await tables.names()]


@router.get("/tables/{name}")
async def table_info(name: str, request: Request) -> dict[str, Any]:
    return await _tables(request).info(name)


# The bulk routes are plain Starlette endpoints, registered ahead of FastAPI's routes (see
# ``app.py``): FastAPI's per-request machinery (parameter solving, response handling) costs about as
# much as everything these endpoints do. The ``@router`` declarations below them only document them
# in the OpenAPI schema and delegate to them.


async def insert(request: Request) -> Response:
    """``{"items": [{"data": nest, "priority": p}], "timeout_ms"}`` or the columnar
    ``{"columns": nest with a batch axis, "priorities": [...], "timeout_ms"}`` -> ``{"keys"}``."""
    name = request.path_params["name"]
    keys = await _tables(request).insert(name, await _decoded(request))
    return _answer(request, {"keys": keys})


async def sample(request: Request) -> Response:
    """``{"batch_size", "timeout_ms"}`` -> keys, probabilities, priorities, times_sampled,
    table_size and data (a nest with a leading batch axis)."""
    out = await _tables(request).sample(request.path_params["name"], await _decoded(request))
    return _answer(request, out)


async def priorities(request: Request) -> Response:
    """``{"keys", "priorities", "deletes"}`` (MessagePack or JSON) -> ``{"updated", "deleted"}``."""
    out = await _tables(request).mutate(request.path_params["name"], await _decoded(request))
    if request.headers.get("content-type", "").startswith("application/json"):
        return JSONResponse(out)
    return _answer(request, out)


BULK_ROUTES = [
    Route("/tables/{name}/insert", insert, methods=["POST"]),
    Route("/tables/{name}/sample", sample, methods=["POST"]),
    Route("/tables/{name}/priorities", priorities, methods=["POST"]),
]


def _documented(endpoint: Any) -> Any:
    async def documented(name: str, request: Request) -> Response:
        return await endpoint(request)

    documented.__doc__ = endpoint.__doc__
    documented.__name__ = endpoint.__name__
    return documented


for _route in BULK_ROUTES:
    router.add_api_route(
        _route.path,
        _documented(_route.endpoint),
        methods=["POST"],
        openapi_extra=_MSGPACK_BODY,
        response_class=Response,
    )


@router.post("/tables/{name}/reset")
async def reset(name: str, request: Request) -> dict[str, Any]:
    """Empties the table and zeroes its counters."""
    await _tables(request).reset(name)
    return {"reset": name}


@router.get("/healthz")
async def healthz(request: Request) -> Response:
    if await _tables(request).store.ping():
        return JSONResponse({"status": "ok"})
    return JSONResponse({"detail": "the table store (Redis) does not answer"}, status_code=503)


@router.get("/status")
async def status(request: Request) -> dict[str, Any]:
    tables = _tables(request)
    infos = [await tables.info(name) for name in await tables.names()]
    return {
        "service": "replay",
        "backend": request.app.state.backend,
        "uptime_s": time.time() - request.app.state.started,
        "tables": {
            info["name"]: {
                "size": info["size"],
                "num_inserts": info["num_inserts"],
                "num_samples": info["num_samples"],
                "num_deletes": info["num_deletes"],
                "waiting_inserts": info["rate_limiter"]["waiting_inserts"],
                "waiting_samples": info["rate_limiter"]["waiting_samples"],
            }
            for info in infos
        },
    }


@router.get("/metrics")
async def metrics(request: Request) -> Response:
    tables = _tables(request)
    size = request.app.state.metrics.size
    for name in await tables.names():
        size.labels(name).set((await tables.store.counters(name)).size)
    return Response(
        generate_latest(request.app.state.metrics.registry), media_type=CONTENT_TYPE_LATEST
    )
