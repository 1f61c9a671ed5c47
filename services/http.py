"""HTTP pieces every service shares (FastAPI/Starlette only; ``shared/`` stays framework-free)."""

from __future__ import annotations

import asyncio
import hmac
import json
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator
from starlette.types import ASGIApp, Message, Receive, Scope, Send

OPEN_PATHS = frozenset({"/healthz", "/metrics"})
DEFAULT_BODY_TIMEOUT_S = 30.0
DEFAULT_KEEP_ALIVE_S = 5.0

LogLevel = Annotated[
    Literal["critical", "error", "warning", "info", "debug"],
    BeforeValidator(lambda value: value.lower() if isinstance(value, str) else value),
]
"""LOG_LEVEL of every service: a bad one stops the service at start (exit 2), not at logging."""


async def send_json_error(
    send: Send, status: int, detail: str, headers: list | None = None
) -> None:
    """Answers ``{"detail": ...}`` with ``status`` from plain ASGI."""
    body = json.dumps({"detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def inline_refs(schema: dict[str, Any]) -> dict[str, Any]:
    """A pydantic JSON schema with its ``$defs`` references replaced by the definitions, for an
    ``openapi_extra`` request body: ``#/$defs/...`` pointers mean nothing inside an OpenAPI
    document (Swagger UI and schemathesis could not read the body's schema)."""
    defs = schema.pop("$defs", {})

    def inline(node: Any) -> Any:
        if isinstance(node, dict):
            if "$ref" in node:
                return inline(defs[node["$ref"].rsplit("/", 1)[1]])
            return {k: inline(v) for k, v in node.items()}
        if isinstance(node, list):
            return [inline(v) for v in node]
        return node

    return inline(schema)


class BearerAuth:
    """Pure ASGI middleware: with a token set, every path but ``/healthz`` and ``/metrics``
    (``/docs`` and ``/openapi.json`` included) answers 401 without ``Authorization: Bearer <token>``.

    The header is compared with ``hmac.compare_digest`` (time independent of where it differs)
    and never logged; the token itself lives in the settings as a ``SecretStr``.
    """

    def __init__(self, app: ASGIApp, *, token: str | None) -> None:
        self.app = app
        self.expected = f"Bearer {token}".encode() if token else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.expected is None or scope["type"] != "http" or scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        authorization = next((v for k, v in scope["headers"] if k == b"authorization"), b"")
        if not hmac.compare_digest(authorization, self.expected):
            await send_json_error(
                send,
                401,
                "missing or wrong token: send 'Authorization: Bearer <RLFLEET_TOKEN>'",
                [(b"www-authenticate", b"Bearer")],
            )
            return
        await self.app(scope, receive, send)


class BodyLimits:
    """Pure ASGI middleware: every request body (MessagePack or JSON) is read here, whole, before
    the app sees it, and held to two limits:

    - at most ``max_body_bytes``: a larger ``Content-Length`` is answered 413 before anything is
      read; a chunked body is cut off with 413 as soon as it passes the limit;
    - within ``body_timeout_s`` of the request's start: a body trickled byte by byte (or a client
      that stops sending) is answered 408 and its connection closed, instead of holding a
      connection and a buffer for ever.

    The app then gets the body as one message (``request.body()`` joins nothing more).
    """

    def __init__(self, app: ASGIApp, *, max_body_bytes: int, body_timeout_s: float) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.body_timeout_s = body_timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        length = next((v for k, v in scope["headers"] if k == b"content-length"), None)
        if length is not None:
            if not length.isdigit():
                await send_json_error(send, 400, f"Content-Length {length[:32]!r} is not a number")
                return
            if int(length) > self.max_body_bytes:
                await send_json_error(send, 413, self._too_large(int(length)))
                return
        chunks: list[bytes] = []
        seen = 0
        try:
            async with asyncio.timeout(self.body_timeout_s):
                while True:
                    message = await receive()
                    if message["type"] != "http.request":  # the client went away
                        return
                    chunk = message.get("body", b"")
                    seen += len(chunk)
                    if seen > self.max_body_bytes:
                        await send_json_error(send, 413, self._too_large(f"more than {seen}"))
                        return
                    chunks.append(chunk)
                    if not message.get("more_body", False):
                        break
        except TimeoutError:
            await send_json_error(
                send,
                408,
                f"the request body did not arrive within {self.body_timeout_s:g} s"
                " (BODY_TIMEOUT_S); send it at once",
                [(b"connection", b"close")],
            )
            return
        body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if sent:
                return await receive()  # after the body: only the disconnect is left to hear
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)

    def _too_large(self, size: int | str) -> str:
        return f"body of {size} bytes is over the limit of {self.max_body_bytes} bytes (MAX_BODY_BYTES)"
