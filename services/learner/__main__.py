"""``python -m services.learner``: settings from the environment, then uvicorn.

Exit codes: 0 after SIGTERM/SIGINT (final checkpoint written), 2 for bad settings, 3 when the
app could not start (e.g. an unreadable checkpoint); the reason is printed to stderr.
"""

from __future__ import annotations

from shared.runtime import configure_process

# Before jax is imported: malloc thresholds and one XLA compute thread (the learner shares its
# cores with replay and actors; measured in docs/learner.md). Set XLA_FLAGS to override. Unlike
# the actor, the learner cannot check its settings first: checking the experiment imports the
# agent, and so JAX, which must find its configuration set.
configure_process()

from services.learner.app import create_app
from services.learner.settings import LearnerSettings
from services.serve import load_settings, serve


def main() -> None:
    settings = load_settings("learner", LearnerSettings)
    serve("learner", create_app(settings), settings, graceful_shutdown_s=10)


if __name__ == "__main__":
    main()
