"""``python -m services.replay``: settings from the environment, then uvicorn.

Exit codes: 0 after SIGTERM/SIGINT, 2 for bad settings, 3 when the app could not start (e.g.
Redis unreachable); the reason is printed to stderr. On SIGTERM, requests waiting for the rate
limiter are answered 503 at once instead of holding the shutdown up.
"""

from __future__ import annotations

import logging
import signal
import sys
from types import FrameType

import uvicorn
from fastapi import FastAPI
from pydantic import ValidationError

from services.replay.app import create_app
from services.replay.settings import Settings
from shared.runtime import configure_process


class _Server(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, app: FastAPI) -> None:
        super().__init__(config)
        self._app = app

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        tables = getattr(self._app.state, "tables", None)
        if tables is not None:
            tables.begin_shutdown()
        super().handle_exit(sig, frame)


def main() -> None:
    configure_process(single_thread_xla=False)
    try:
        settings = Settings()
    except ValidationError as e:
        print(f"replay: bad settings, not starting:\n{e}", file=sys.stderr)
        sys.exit(2)
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    app = create_app(settings)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http="httptools",
        log_level=settings.log_level.lower(),
        access_log=False,
        timeout_graceful_shutdown=5,
    )
    server = _Server(config, app)
    # uvicorn re-raises SIGTERM after its graceful shutdown under the handler installed before it
    # started: make that one a no-op so that a clean stop exits 0.
    signal.signal(signal.SIGTERM, lambda signum, frame: None)
    server.run()
    if not server.started:
        print("replay: could not start (see the error above)", file=sys.stderr)
        sys.exit(3)


if __name__ == "__main__":
    main()
