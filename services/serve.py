"""What every ``python -m services.<name>`` does after reading its settings: log, serve, exit.

Exit codes: 0 after SIGTERM/SIGINT (the app's lifespan ran its shutdown), 2 for bad settings,
3 when the app could not start; the reason goes to stderr.
"""

from __future__ import annotations

import logging
import signal
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import uvicorn
from pydantic import ValidationError
from pydantic_settings import BaseSettings

S = TypeVar("S", bound=BaseSettings)


def load_settings(service: str, settings_cls: type[S]) -> S:
    """The service's settings from the environment, or exit 2 with one line on stderr that names
    each bad variable (no traceback)."""
    try:
        return settings_cls()
    except ValidationError as e:
        reasons = "; ".join(
            ".".join(map(str, err["loc"])).upper()
            + ": " * bool(err["loc"])
            + " ".join(err["msg"].removeprefix("Value error, ").split())
            for err in e.errors()
        )
        print(f"{service}: bad settings, not starting: {reasons}", file=sys.stderr)
        sys.exit(2)


def serve(
    service: str,
    app: Any,
    settings: Any,
    *,
    graceful_shutdown_s: int = 5,
    server_cls: Callable[[uvicorn.Config], uvicorn.Server] = uvicorn.Server,
) -> None:
    """Runs ``app`` under uvicorn on ``settings.host``/``settings.port`` until SIGTERM/SIGINT."""
    log_level = settings.log_level.lower()
    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # One log line per request is a cost on the hot path: access logs only when debugging.
    debug = log_level == "debug"
    logging.getLogger("httpx").setLevel(logging.DEBUG if debug else logging.WARNING)
    server = server_cls(
        uvicorn.Config(
            app,
            host=settings.host,
            port=settings.port,
            log_level=log_level,
            access_log=debug,
            timeout_graceful_shutdown=graceful_shutdown_s,
            timeout_keep_alive=settings.keep_alive_s,  # idle keep-alive connections close
        )
    )
    # uvicorn shuts down gracefully on SIGTERM, then re-raises the signal under the handler that
    # was installed before it started: a no-op one makes a clean stop exit 0.
    signal.signal(signal.SIGTERM, lambda signum, frame: None)
    server.run()
    if not server.started:
        print(f"{service}: could not start (see the error above)", file=sys.stderr)
        sys.exit(3)
