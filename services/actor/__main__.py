"""``python -m services.actor``: the actor service under uvicorn (settings from the environment).

Exit codes: 0 after SIGTERM/SIGINT (pending items flushed), 2 for bad settings.
"""

from __future__ import annotations

from shared.runtime import configure_process

# Before jax is imported: malloc thresholds and one thread per XLA computation (the policy is
# tiny; the envs need the CPU).
configure_process()

import logging
import signal
import sys

import uvicorn
from pydantic import ValidationError

from services.actor.app import create_app
from services.actor.settings import ActorSettings


def main() -> None:
    try:
        settings = ActorSettings()
    except ValidationError as e:
        reasons = "\n".join(
            f"  {'.'.join(map(str, err['loc'])).upper() or 'settings'}: {err['msg']}"
            for err in e.errors()
        )
        print(f"actor: bad settings, not starting:\n{reasons}", file=sys.stderr)
        sys.exit(2)
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request otherwise
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(settings),
            host=settings.host,
            port=settings.port,
            log_level=settings.log_level.lower(),
            access_log=False,
            timeout_graceful_shutdown=5,
        )
    )
    # uvicorn stops gracefully on SIGTERM (the lifespan flushes pending items), then re-raises the
    # signal under the handler installed before it started: a no-op one makes a clean stop exit 0.
    signal.signal(signal.SIGTERM, lambda signum, frame: None)
    server.run()


if __name__ == "__main__":
    main()
