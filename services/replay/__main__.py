"""``python -m services.replay``: the replay service under uvicorn (SIGTERM stops it cleanly)."""

from __future__ import annotations

import logging

import uvicorn

from services.replay.app import create_app
from services.replay.settings import Settings


def main() -> None:
    settings = Settings()
    logging.basicConfig(level=settings.log_level.upper())
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http="httptools",
        log_level=settings.log_level.lower(),
        access_log=False,
        timeout_graceful_shutdown=5,
    )


if __name__ == "__main__":
    main()
