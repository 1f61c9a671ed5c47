"""HTTP pieces every service shares (FastAPI/Starlette only; ``shared/`` stays framework-free)."""

from __future__ import annotations

import hmac
import json

from starlette.types import ASGIApp, Receive, Scope, Send

OPEN_PATHS = frozenset({"/healthz", "/metrics"})


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


class BearerAuth:
    """Pure ASGI middleware: with a token set, every path but ``/healthz`` and ``/metrics``
    (``/docs`` and ``/openapi.json`` included) answers 401 without ``Authorization: Bearer <token>``.
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
