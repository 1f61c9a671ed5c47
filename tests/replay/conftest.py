"""The replay service in a real uvicorn server on a loopback port, once per storage backend."""

from __future__ import annotations

import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import pytest
import uvicorn

from services.replay.app import create_app
from services.replay.settings import Settings
from shared.clients import ReplayClient, make_http_client
from tests.support import free_port


class ServerThread:
    """A uvicorn server running ``create_app(settings)`` in a background thread."""

    def __init__(self, settings: Settings) -> None:
        self.port = settings.port
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            create_app(settings), host="127.0.0.1", port=self.port, log_level="warning"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if not self.thread.is_alive():
                raise RuntimeError("the replay server failed to start (see the log above)")
            if time.monotonic() > deadline:
                raise TimeoutError("the replay server did not start within 20 s")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)
        assert not self.thread.is_alive(), "the replay server did not stop"


StartReplay = Callable[..., AbstractAsyncContextManager[ReplayClient]]


@pytest.fixture(params=["memory", "redis"])
def start_replay(request: pytest.FixtureRequest) -> StartReplay:
    """``async with start_replay(**settings) as client``: a fresh server on the param's backend."""
    redis_url = request.getfixturevalue("redis_url") if request.param == "redis" else None

    @asynccontextmanager
    async def start(**overrides: Any) -> AsyncIterator[ReplayClient]:
        fields: dict[str, Any] = {
            "host": "127.0.0.1",
            "port": free_port(),
            "redis_url": redis_url,
            "rlfleet_token": None,
            "seed": 1234,
            **overrides,
        }
        token = fields["rlfleet_token"]
        with ServerThread(Settings(**fields)) as server:
            async with make_http_client(server.url, token=token) as http:
                yield ReplayClient(http, connect_retries=0)

    return start


@pytest.fixture
async def replay(start_replay: StartReplay) -> AsyncIterator[ReplayClient]:
    async with start_replay() as client:
        yield client
