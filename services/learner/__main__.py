"""``python -m services.learner``: settings from the environment, then uvicorn.

Exit codes: 0 after SIGTERM/SIGINT (final checkpoint written), 2 for bad settings, 3 when the
app could not start (e.g. an unreadable checkpoint); the reason is printed to stderr.
"""

from __future__ import annotations

from shared.runtime import configure_process

# Before jax is imported: malloc thresholds and one XLA compute thread (the learner shares its
# cores with replay and actors; measured in docs/learner.md). Set XLA_FLAGS to override.
configure_process()

import logging
import signal
import sys

import uvicorn
from pydantic import ValidationError

from services.learner.app import create_app
from services.learner.settings import LearnerSettings


def main() -> None:
    try:
        settings = LearnerSettings()
    except ValidationError as e:
        reasons = "\n".join(
            "  "
            + ".".join(map(str, err["loc"])).upper()
            + ": " * bool(err["loc"])
            + err["msg"].removeprefix("Value error, ")
            for err in e.errors()
        )
        print(f"learner: bad settings, not starting:\n{reasons}", file=sys.stderr)
        sys.exit(2)
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # One line per sample request / GET /params is a cost on the hot path: only when debugging.
    debug = settings.log_level == "debug"
    logging.getLogger("httpx").setLevel(logging.DEBUG if debug else logging.WARNING)
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(settings),
            host=settings.host,
            port=settings.port,
            log_level=settings.log_level,
            timeout_graceful_shutdown=10,
            access_log=debug,
            lifespan="on",
        )
    )
    # uvicorn shuts down gracefully on SIGTERM (our lifespan writes the final checkpoint), then
    # re-raises the signal under the handler that was installed before it started: make that one
    # a no-op so that a clean stop exits 0.
    signal.signal(signal.SIGTERM, lambda signum, frame: None)
    server.run()
    if not server.started:
        print("learner: could not start (see the error above)", file=sys.stderr)
        sys.exit(3)


if __name__ == "__main__":
    main()
