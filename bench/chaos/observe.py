"""What the campaign watches: every service's status, four times a second, and the ledger.

The ledger compares what was *acknowledged* with what the services hold:

    items lost  = sum over actor incarnations of the items their inserts' 200s stored
                  - the replay table's num_inserts (kept in Redis)
    steps lost  = sum over actor incarnations of the steps the learner's 200s acknowledged
                  - the learner's actor_steps (likewise episodes, and the evaluator's episodes)

Each poll asks the actors first and the replay and the learner after, so anything an actor had
seen acknowledged is already counted by the service when it is asked: a positive difference is a
real loss. An incarnation that is killed counts with its last polled figures (at most one poll,
0.25 s, old), which can only understate a loss. Parameter versions are checked to only grow,
across learner restarts included.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from bench.chaos.fleet import Proc, Supervisor, service_url
from bench.chaos.network import Network

POLL_EVERY_S = 0.25


@dataclass
class Snapshot:
    t: float
    actors: dict[str, dict[str, Any] | None]
    learner: dict[str, Any] | None
    table: dict[str, Any] | None
    rss: dict[str, int | None]
    pids: dict[str, int | None]
    acked_items: int
    acked_steps: int
    acked_episodes: int
    acked_eval_episodes: int

    @property
    def items_lost(self) -> int | None:
        if self.table is None:
            return None
        return max(0, self.acked_items - int(self.table["num_inserts"]))

    @property
    def steps_lost(self) -> int | None:
        if self.learner is None:
            return None
        return max(
            0,
            self.acked_steps - int(self.learner["actor_steps"]),
            self.acked_episodes - int(self.learner["episodes"]),
            self.acked_eval_episodes - int(self.learner["eval_episodes"]),
        )


@dataclass
class Ledger:
    """Acknowledged figures per actor incarnation (pid), and what version rules were broken."""

    items: dict[int, int] = field(default_factory=dict)
    steps: dict[int, int] = field(default_factory=dict)
    episodes: dict[int, int] = field(default_factory=dict)
    eval_episodes: dict[int, int] = field(default_factory=dict)
    last_version: int = 0
    version_regressions: list[tuple[str, int, int]] = field(default_factory=list)  # who, old, new
    actor_versions: dict[int, int] = field(default_factory=dict)

    def actor(self, name: str, pid: int, status: dict[str, Any], *, evaluation: bool) -> None:
        if evaluation:
            self.eval_episodes[pid] = int(status.get("acknowledged_episodes", 0))
        else:
            self.items[pid] = int(status["inserted_items"])
            self.steps[pid] = int(status.get("acknowledged_steps", 0))
            self.episodes[pid] = int(status.get("acknowledged_episodes", 0))
        version = status.get("param_version")
        if version is not None:
            if version < self.actor_versions.get(pid, 0):
                self.version_regressions.append((name, self.actor_versions[pid], version))
            self.actor_versions[pid] = int(version)

    def learner(self, status: dict[str, Any]) -> None:
        version = int(status["param_version"])
        if version < self.last_version:
            self.version_regressions.append(("learner", self.last_version, version))
        self.last_version = max(self.last_version, version)


class Observer:
    """Polls every service into ``snapshots`` until closed."""

    def __init__(self, network: Network, supervisor: Supervisor, token: str) -> None:
        self.network = network
        self.supervisor = supervisor
        self.http = httpx.AsyncClient(timeout=1.0, headers={"Authorization": f"Bearer {token}"})
        self.ledger = Ledger()
        self.snapshots: list[Snapshot] = []
        self.table: str | None = None
        self.started = time.monotonic()
        self._task: asyncio.Task | None = None
        self._new = asyncio.Event()
        self._polling = asyncio.Lock()

    def now(self) -> float:
        return time.monotonic() - self.started

    def start(self) -> None:
        self._task = asyncio.create_task(self._poll_forever(), name="observer")

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self.http.aclose()

    async def next_snapshot(self, timeout_s: float = 30.0) -> Snapshot:
        """The next poll's snapshot; a poller that died or hangs is an error, not a wait."""
        self._new.clear()
        try:
            await asyncio.wait_for(self._new.wait(), timeout_s)
        except TimeoutError:
            task = self._task
            died = task is not None and task.done() and not task.cancelled()
            cause = task.exception() if died else None
            raise RuntimeError(f"the observer gave no snapshot in {timeout_s:.0f} s") from cause
        return self.snapshots[-1]

    async def _get(self, proc: Proc, path: str) -> dict[str, Any] | None:
        if proc.stopped or not proc.running():
            return None
        try:
            response = await self.http.get(service_url(self.network, proc) + path)
        except httpx.HTTPError:
            return None
        return response.json() if response.status_code == 200 else None

    async def _poll_forever(self) -> None:
        while True:
            started = time.monotonic()
            self.snapshots.append(await self.poll())
            self._new.set()
            await asyncio.sleep(max(0.0, POLL_EVERY_S - (time.monotonic() - started)))

    async def acked_now(self) -> tuple[int, int, int]:
        """(steps, episodes, evaluation episodes) acknowledged, with every live actor asked now."""
        procs = self.supervisor.procs
        names = [n for n in procs if n.startswith("actor") or n == "evaluator"]
        pids = {n: procs[n].pid for n in names}
        statuses = await asyncio.gather(*(self._get(procs[n], "/status") for n in names))
        led = self.ledger
        steps, episodes, evals = dict(led.steps), dict(led.episodes), dict(led.eval_episodes)
        for name, status in zip(names, statuses, strict=True):
            if status is None or pids[name] is None:
                continue
            if name == "evaluator":
                evals[pids[name]] = int(status["acknowledged_episodes"])
            else:
                steps[pids[name]] = int(status["acknowledged_steps"])
                episodes[pids[name]] = int(status["acknowledged_episodes"])
        return sum(steps.values()), sum(episodes.values()), sum(evals.values())

    async def learner_status(self) -> dict[str, Any] | None:
        return await self._get(self.supervisor.procs["learner"], "/status")

    async def poll(self) -> Snapshot:
        """One round: actors, then learner and replay. Rounds never overlap: the ledger takes
        each incarnation's figures in the order they were read."""
        async with self._polling:
            return await self._poll()

    async def _poll(self) -> Snapshot:
        procs = self.supervisor.procs
        actor_names = [n for n in procs if n.startswith("actor") or n == "evaluator"]
        pids = {n: procs[n].pid for n in actor_names}
        statuses = await asyncio.gather(*(self._get(procs[n], "/status") for n in actor_names))
        actors = dict(zip(actor_names, statuses, strict=True))
        for name, status in actors.items():
            if status is not None and pids[name] is not None:
                self.ledger.actor(name, pids[name], status, evaluation=name == "evaluator")
        # the sinks after the sources: what an actor saw acknowledged is counted by now
        learner = await self._get(procs["learner"], "/status")
        if learner is not None:
            self.ledger.learner(learner)
            if self.table is None:
                config = await self._get(procs["learner"], "/config")
                self.table = next(iter(config["tables"])) if config else None
        table = await self._get(procs["replay"], f"/tables/{self.table}") if self.table else None
        led = self.ledger
        return Snapshot(
            t=self.now(),
            actors=actors,
            learner=learner,
            table=table,
            rss={name: proc.rss_bytes() for name, proc in procs.items()},
            pids={name: proc.pid for name, proc in procs.items()},
            acked_items=sum(led.items.values()),
            acked_steps=sum(led.steps.values()),
            acked_episodes=sum(led.episodes.values()),
            acked_eval_episodes=sum(led.eval_episodes.values()),
        )
