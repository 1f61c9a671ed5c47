"""A learner app served by a real uvicorn on a loopback socket, in a thread of the test process."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn
from fastapi import FastAPI

from services.learner.app import create_app
from services.learner.settings import LearnerSettings
from tests.support import free_port, wait_until


@contextmanager
def serve(settings: LearnerSettings) -> Iterator[tuple[str, FastAPI]]:
    """Yields ``(base_url, app)`` of a learner app; shuts it down (lifespan included) on exit."""
    app = create_app(settings)
    with serve_app(app) as url:
        yield url, app


@contextmanager
def serve_app(app: FastAPI) -> Iterator[str]:
    """Serves any ASGI app on a free loopback port from a thread; yields its base URL."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, name="app-under-test", daemon=True)
    thread.start()
    try:
        wait_until(lambda: server.started or not thread.is_alive(), timeout_s=60, what="the app")
        if not server.started:
            raise RuntimeError("the app did not start (see the log above)")
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        if thread.is_alive():
            raise RuntimeError("the app did not shut down within 30 s")


def unreachable_replay() -> str:
    """A replay URL where nothing listens: the loop keeps waiting for it."""
    return f"http://127.0.0.1:{free_port()}"
