"""``python -m services.replay``: settings from the environment, then uvicorn (``services.serve``).

Exit codes: 0 after SIGTERM/SIGINT, 2 for bad settings, 3 when the app could not start (e.g.
Redis unreachable). On SIGTERM, requests waiting for the rate limiter are answered 503 at once
instead of holding the shutdown up.
"""

from __future__ import annotations

from types import FrameType

import uvicorn
from fastapi import FastAPI

from services.replay.settings import Settings
from services.serve import load_settings, serve
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
    configure_process(uses_jax=False)
    settings = load_settings("replay", Settings)
    from services.replay.app import create_app  # after the settings: bad ones stop at once

    app = create_app(settings)
    serve("replay", app, settings, server_cls=lambda config: _Server(config, app))


if __name__ == "__main__":
    main()
