"""What a run is doing, read from the services' ``/status`` and the replay's ``GET /tables``."""

from __future__ import annotations

import asyncio
import csv
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

Status = dict[str, Any]


@dataclass(frozen=True)
class Snapshot:
    """One poll of every service; a service that did not answer (yet) is None."""

    wall_s: float  # seconds since the command started
    learner: Status | None = None
    actors: dict[str, Status | None] = field(default_factory=dict)  # training actors, by name
    evaluator: Status | None = None
    tables: list[Status] | None = None

    def _learner(self, key: str) -> Any:
        return None if self.learner is None else self.learner.get(key)

    @property
    def env_steps(self) -> int:
        """Training env steps: the learner's count (what its returns are measured against), or the
        actors' own while the learner has not heard from them."""
        reported = self._learner("actor_steps") or 0
        live = sum(int(s.get("steps", 0)) for s in self.actors.values() if s)
        return max(int(reported), live)

    @property
    def learner_steps(self) -> int:
        return int(self._learner("learner_steps") or 0)

    @property
    def episodes(self) -> int:
        return int(self._learner("episodes") or 0)

    @property
    def return_mean_100(self) -> float | None:
        return self._learner("return_mean_100")

    @property
    def eval_return_mean(self) -> float | None:
        return self._learner("eval_return_mean")

    @property
    def param_version(self) -> int | None:
        return self._learner("param_version")

    @property
    def actor_steps_per_s(self) -> float:
        return sum(float(s.get("steps_per_s") or 0.0) for s in self.actors.values() if s)

    @property
    def replay_size(self) -> int | None:
        if self.tables is None:
            return None
        return sum(int(t.get("size", 0)) for t in self.tables)

    def waiting(self) -> tuple[int, int] | None:
        """(waiting inserts, waiting samples) summed over the tables."""
        if self.tables is None:
            return None
        limiters = [t.get("rate_limiter") or {} for t in self.tables]
        return (
            sum(int(r.get("waiting_inserts", 0)) for r in limiters),
            sum(int(r.get("waiting_samples", 0)) for r in limiters),
        )


def table_infos(body: Any) -> list[Status]:
    """The tables of a ``GET /tables`` answer: a list, ``{"tables": [...]}``, or a map by name."""
    if isinstance(body, dict) and "tables" in body:
        body = body["tables"]
    if isinstance(body, dict):
        return [{"name": name, **info} for name, info in body.items() if isinstance(info, dict)]
    if isinstance(body, list):
        return [t for t in body if isinstance(t, dict)]
    return []


class Poller:
    """Reads every service's progress concurrently; errors read as "no answer"."""

    def __init__(
        self,
        *,
        replay_url: str,
        learner_url: str,
        actor_urls: dict[str, str],
        evaluator_url: str | None,
        headers: dict[str, str],
        timeout_s: float = 1.0,
    ) -> None:
        self._replay_url = replay_url
        self._learner_url = learner_url
        self._actor_urls = actor_urls
        self._evaluator_url = evaluator_url
        self._http = httpx.AsyncClient(timeout=timeout_s, headers=headers)

    async def _get(self, url: str) -> Any:
        try:
            response = await self._http.get(url)
        except httpx.HTTPError:
            return None
        if response.status_code != 200:
            return None
        try:
            return response.json()
        except ValueError:
            return None

    async def poll(self, wall_s: float) -> Snapshot:
        names = list(self._actor_urls)
        urls = [
            f"{self._learner_url}/status",
            f"{self._replay_url}/tables",
            *(f"{self._actor_urls[n]}/status" for n in names),
        ]
        if self._evaluator_url:
            urls.append(f"{self._evaluator_url}/status")
        answers = await asyncio.gather(*(self._get(u) for u in urls))
        learner, tables, rest = answers[0], answers[1], answers[2:]
        return Snapshot(
            wall_s=wall_s,
            learner=learner,
            actors=dict(zip(names, rest[: len(names)], strict=True)),
            evaluator=rest[len(names)] if self._evaluator_url else None,
            tables=None if tables is None else table_infos(tables),
        )

    async def aclose(self) -> None:
        await self._http.aclose()


PROGRESS_COLUMNS = (
    "wall_s",
    "actor_steps",
    "learner_steps",
    "episodes",
    "return_mean_100",
    "eval_return_mean",
    "param_version",
    "replay_size",
)


class ProgressLog:
    """``progress.csv``: one row per poll once the learner answers."""

    def __init__(self, path: Path) -> None:
        self.path = path
        fresh = not path.exists() or path.stat().st_size == 0
        # appended to: a resumed run's rows follow the old ones (its wall_s start again at 0)
        self._file = open(path, "a", newline="")  # noqa: SIM115 - kept open for the whole run
        self._writer = csv.writer(self._file)
        if fresh:
            self._writer.writerow(PROGRESS_COLUMNS)

    def record(self, s: Snapshot) -> None:
        if s.learner is None:
            return
        row = (
            f"{s.wall_s:.2f}",
            s.env_steps,
            s.learner_steps,
            s.episodes,
            _blank(s.return_mean_100),
            _blank(s.eval_return_mean),
            _blank(s.param_version),
            _blank(s.replay_size),
        )
        self._writer.writerow(row)
        self._file.flush()

    def close(self) -> None:
        self._file.close()


def _blank(value: Any) -> Any:
    return "" if value is None else value


def read_progress(path: Path) -> list[dict[str, float | None]]:
    """The rows of a ``progress.csv``, numbers parsed, empty cells as None."""
    with open(path, newline="") as f:
        return [
            {k: (float(v) if v not in ("", None) else None) for k, v in row.items()}
            for row in csv.DictReader(f)
        ]
