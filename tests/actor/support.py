"""A tiny stand-in parameter server (not one of our services) run by a real uvicorn."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Annotated, Any

import numpy as np
import uvicorn
from fastapi import FastAPI, Header, Response

from shared import codec
from tests.support import free_port


@dataclass
class ParamServer:
    """Serves ``GET /params`` with ETag / If-None-Match like the contract says."""

    version: int = 1
    params: Any = field(default_factory=lambda: {"w": np.ones((2, 3), np.float32)})
    fail_with: int | None = None  # answer this status instead
    requests: list[str | None] = field(default_factory=list)  # If-None-Match of each request

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.get("/params")
        async def params(if_none_match: Annotated[str | None, Header()] = None) -> Response:
            self.requests.append(if_none_match)
            if self.fail_with is not None:
                return Response(status_code=self.fail_with, content=b'{"detail": "down"}')
            etag = f'"{self.version}"'
            if if_none_match == etag:
                return Response(status_code=304, headers={"ETag": etag})
            body = codec.encode({"version": self.version, "params": self.params})
            return Response(body, media_type=codec.CONTENT_TYPE, headers={"ETag": etag})

        return app


@contextlib.asynccontextmanager
async def serve(
    app: FastAPI, port: int | None = None, *, lifespan: str = "off"
) -> AsyncIterator[str]:
    """``app`` under a real uvicorn on a loopback port, in this event loop."""
    port = port or free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", lifespan=lifespan
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        async with asyncio.timeout(10):
            while True:
                if server.started:
                    break
                await asyncio.sleep(0.01)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)


async def wait_for(predicate, timeout_s: float = 10.0) -> None:
    """Polls ``predicate`` (a cheap in-process check) until true; TimeoutError after ``timeout_s``."""
    async with asyncio.timeout(timeout_s):
        while True:
            if predicate():
                return
            await asyncio.sleep(0.01)
