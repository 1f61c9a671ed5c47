"""What actors report through ``POST /episodes``: steps, episodes, returns, who was seen when.

``return_mean_100`` is the mean return of the last 100 *training* episodes; evaluation episodes
(``"evaluation": true``) only feed ``eval_return_mean``, the mean of the last ``EVAL_WINDOW``.
The totals and both windows are checkpointed (``save``/``restore``); the per-actor table is not.
``journal_seq`` counts the reports counted so far: a checkpoint's counters include exactly the
journal's reports up to it (services/learner/journal.py).
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import Any

import numpy as np

RETURN_WINDOW = 100
EVAL_WINDOW = 100
MAX_ACTORS = 1024  # the per-actor table forgets the least recently seen beyond this


@dataclass
class ActorSeen:
    last_seen: float  # time.time()
    steps: int = 0
    episodes: int = 0
    evaluation: bool = False


class EpisodeCounters:
    """Totals and recent returns over every actor's reports."""

    def __init__(self) -> None:
        self.actor_steps = 0
        self.episodes = 0
        self.eval_episodes = 0
        self.returns: deque[float] = deque(maxlen=RETURN_WINDOW)
        self.eval_returns: deque[float] = deque(maxlen=EVAL_WINDOW)
        self.actors: OrderedDict[str, ActorSeen] = OrderedDict()
        self.journal_seq = 0

    def report(self, actor_id: str, steps: int, returns: list[float], *, evaluation: bool) -> None:
        """Adds one actor report (already validated: finite returns, steps >= 0)."""
        self.journal_seq += 1
        seen = self.actors.pop(actor_id, None) or ActorSeen(last_seen=0.0)
        seen.last_seen = time.time()
        seen.steps += steps
        seen.episodes += len(returns)
        seen.evaluation = evaluation
        self.actors[actor_id] = seen
        while len(self.actors) > MAX_ACTORS:
            self.actors.popitem(last=False)
        if evaluation:
            self.eval_episodes += len(returns)
            self.eval_returns.extend(returns)
        else:
            self.actor_steps += steps
            self.episodes += len(returns)
            self.returns.extend(returns)

    @property
    def return_mean_100(self) -> float | None:
        return float(np.mean(self.returns)) if self.returns else None

    @property
    def eval_return_mean(self) -> float | None:
        return float(np.mean(self.eval_returns)) if self.eval_returns else None

    def actors_status(self) -> dict[str, dict[str, Any]]:
        now = time.time()
        return {
            actor_id: {
                "last_seen_s_ago": round(now - seen.last_seen, 3),
                "steps": seen.steps,
                "episodes": seen.episodes,
                "evaluation": seen.evaluation,
            }
            for actor_id, seen in self.actors.items()
        }

    def save(self) -> dict[str, Any]:
        return {
            "actor_steps": self.actor_steps,
            "episodes": self.episodes,
            "eval_episodes": self.eval_episodes,
            "returns": np.asarray(self.returns, dtype=np.float64),
            "eval_returns": np.asarray(self.eval_returns, dtype=np.float64),
            "journal_seq": self.journal_seq,
        }

    def restore(self, state: dict[str, Any]) -> None:
        self.actor_steps = int(state["actor_steps"])
        self.episodes = int(state["episodes"])
        self.eval_episodes = int(state["eval_episodes"])
        self.returns = deque(np.asarray(state["returns"]).tolist(), maxlen=RETURN_WINDOW)
        self.eval_returns = deque(np.asarray(state["eval_returns"]).tolist(), maxlen=EVAL_WINDOW)
        self.journal_seq = int(state.get("journal_seq", 0))  # older checkpoints: no journal

    def copy(self) -> EpisodeCounters:
        """The totals and windows as they are now (for a checkpoint taken off the event loop)."""
        frozen = EpisodeCounters()
        frozen.restore(self.save())
        return frozen
