"""``python -m services.actor``: the actor service under uvicorn (settings from the environment).

Exit codes: 0 after SIGTERM/SIGINT (pending items flushed), 2 for bad settings.
"""

from __future__ import annotations

from shared.runtime import configure_environment, configure_process

# Before anything imports jax: malloc thresholds and one thread per XLA computation (the policy is
# tiny; the envs need the CPU).
configure_environment()

from services.actor.settings import ActorSettings
from services.serve import load_settings, serve


def main() -> None:
    settings = load_settings("actor", ActorSettings)  # bad settings: exit 2 before jax loads
    configure_process()
    from services.actor.app import create_app  # jax

    serve("actor", create_app(settings), settings)


if __name__ == "__main__":
    main()
