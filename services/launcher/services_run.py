"""``rlfleet run``'s services home: replay, learner, actors and an evaluator as local processes.

Each is ``python -m services.<name>`` with its settings in its environment, as in a container;
the launcher starts them all at once, polls their ``/status`` about twice a second into the
``Watch`` (services/launcher/run.py), and stops them tier by tier (actors, learner, replay).
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console

from services.launcher.display import Row
from services.launcher.processes import (
    Child,
    ChildExited,
    child_env,
    free_port,
    jax_cache_env,
    stop_children,
    wait_healthy,
)
from services.launcher.progress import Poller, Snapshot, Status
from services.launcher.run import (
    EXIT_CHILD_FAILED,
    EXIT_INTERRUPTED,
    Outcome,
    RunOptions,
    Watch,
    actor_seed,
    evaluator_seed,
)

PROJECT_ROOT = Path(__file__).resolve().parents[2]  # where `services` is importable


def plan_children(opts: RunOptions) -> tuple[Child, Child, list[Child], Child | None]:
    """The processes of a run with their ports and environments (not started)."""
    logs = opts.run_dir / "logs"
    common = {"HOST": "127.0.0.1", "LOG_LEVEL": opts.log_level}
    if opts.jax_cache_dir is not None:
        common.update(jax_cache_env(opts.jax_cache_dir.resolve()))
    if opts.token:
        common["RLFLEET_TOKEN"] = opts.token

    def make(name: str, module: str, settings: dict[str, str], nice: int = 0) -> Child:
        port = free_port()
        extra = {**opts.extra_env.get("all", {}), **opts.extra_env.get(module, {})}
        if settings.get("ROLE") == "evaluator":
            extra.update(opts.extra_env.get("evaluator", {}))
        env = child_env({**common, "PORT": str(port), **settings, **extra}, threads=opts.threads)
        return Child(name, module, port, env, logs / f"{name}.log", nice=nice)

    replay = make("replay", "replay", {"REDIS_URL": opts.redis_url} if opts.redis_url else {})
    learner = make(
        "learner",
        "learner",
        {
            "REPLAY_URL": replay.url,
            "AGENT": opts.agent,
            "ENV_ID": opts.env_id,
            "SEED": str(opts.seed),
            "AGENT_CONFIG": json.dumps(opts.agent_config),
            "RUN_DIR": str((opts.run_dir / "learner").resolve()),
            "CHECKPOINT_DIR": str((opts.run_dir / "checkpoints").resolve()),
            **(
                {"CHECKPOINT_EVERY_S": str(opts.checkpoint_every_s)}
                if opts.checkpoint_every_s
                else {}
            ),
        },
    )
    num_envs = {"NUM_ENVS": str(opts.num_envs)} if opts.num_envs else {}
    actors = [
        make(
            f"actor-{i}",
            "actor",
            {
                "LEARNER_URL": learner.url,
                "REPLAY_URL": replay.url,
                "ACTOR_ID": f"actor-{i}",
                "SEED": str(actor_seed(opts.seed, i)),
                "ROLE": "actor",
                "ACTOR_INDEX": str(i),
                "NUM_ACTORS": str(opts.actors),
                **num_envs,
            },
        )
        for i in range(opts.actors)
    ]
    evaluator = None
    if opts.evaluator:
        evaluator = make(
            "evaluator",
            "actor",
            {
                "LEARNER_URL": learner.url,
                "REPLAY_URL": replay.url,
                "ACTOR_ID": "evaluator",
                "SEED": str(evaluator_seed(opts.seed)),
                "ROLE": "evaluator",
            },
            nice=opts.evaluator_nice,
        )
    return replay, learner, actors, evaluator


def child_row(child: Child, s: Snapshot) -> Row:
    """The display's line of one service process."""
    status: Status | None
    if child.module == "learner":
        status = s.learner
    elif child.module == "replay":
        status = {"tables": s.tables} if s.tables is not None else None
    else:
        status = s.actors.get(child.name) if child.name in s.actors else s.evaluator
    code = child.returncode()
    if code is not None:
        state = f"exited {code}"
    elif child.proc is None:
        state = "not started"
    elif status is None:
        state = "starting"
    else:  # learner: phase; actor: state
        state = str(status.get("phase") or status.get("state") or "up")
    return Row(child.name, child.module, state, status)


class ServicesRun:
    """One ``rlfleet run`` through the services: start, watch, stop, report."""

    def __init__(self, opts: RunOptions, *, started_at: float, console: Console) -> None:
        self.opts = opts
        self.watch = Watch(opts, started_at=started_at, console=console)
        self.console = console
        self.replay, self.learner, self.actors, self.evaluator = plan_children(opts)
        self.children = [self.replay, self.learner, *self.actors]
        if self.evaluator:
            self.children.append(self.evaluator)
        self.headers = {"Authorization": f"Bearer {opts.token}"} if opts.token else {}
        self._stop = asyncio.Event()
        self._force = asyncio.Event()
        self._stop_reason: str | None = None
        self.healthy_at_s: float | None = None  # when every service first answered /healthz

    # --- signals -------------------------------------------------------------------------------
    def _on_signal(self, signum: int) -> None:
        if self._stop.is_set():
            self._force.set()  # a second Ctrl-C: no more grace
            return
        self._stop_reason = f"interrupted ({signal.Signals(signum).name})"
        self._stop.set()

    # --- main ----------------------------------------------------------------------------------
    async def execute(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self._on_signal, sig)
        self.watch.open()
        outcome = Outcome("failed", EXIT_CHILD_FAILED)
        cpu_s: dict[str, float | None] = {}
        try:
            outcome = await self._start_and_watch()
        finally:
            self.watch.close()
            cpu_s = {c.name: c.cpu_seconds() for c in self.children}
            cpu_s["launcher"] = time.process_time()
            await stop_children(
                [
                    [*self.actors, *([self.evaluator] if self.evaluator else [])],
                    [self.learner],
                    [self.replay],
                ],
                grace_s=self.opts.grace_s,
                force=self._force,
            )
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
        failed = next((c for c in self.children if c.name == outcome.failed), None)
        failed_log = None
        if failed is not None:
            failed_log = (
                f"{failed.name} exited with code {failed.returncode()}"
                f" - last lines of {failed.log_path}",
                failed.log_tail(),
            )
        extra = {"services_healthy_at_s": self.healthy_at_s and round(self.healthy_at_s, 2)}
        self.watch.report(outcome, cpu_s=cpu_s, failed_log=failed_log, extra=extra)
        return outcome.exit_code

    def _services(self) -> dict[str, Any]:
        return {
            c.name: {"module": c.module, "url": c.url, "pid": c.pid, "log": str(c.log_path)}
            for c in self.children
        }

    async def _start_and_watch(self) -> Outcome:
        watch = self.watch
        poller = Poller(
            replay_url=self.replay.url,
            learner_url=self.learner.url,
            actor_urls={a.name: a.url for a in self.actors},
            evaluator_url=self.evaluator.url if self.evaluator else None,
            headers=self.headers,
        )
        try:
            startup = asyncio.create_task(self._start(PROJECT_ROOT))
            while True:
                failed = next((c for c in self.children if c.returncode() is not None), None)
                if failed is not None:
                    return Outcome("failed", EXIT_CHILD_FAILED, failed.name, watch.elapsed())
                if startup.done() and startup.exception() is not None:
                    return self._startup_failure(startup.exception())
                snapshot = await poller.poll(watch.elapsed())
                outcome = watch.observe(snapshot, [child_row(c, snapshot) for c in self.children])
                if watch.experiment is None and snapshot.learner is not None:
                    await self._fetch_experiment()
                if outcome is not None:
                    return outcome
                try:
                    await asyncio.wait_for(self._stop.wait(), self.opts.poll_every_s)
                except TimeoutError:
                    continue
                return Outcome(
                    self._stop_reason or "interrupted",
                    EXIT_INTERRUPTED,
                    stopped_at_s=watch.elapsed(),
                )
        finally:
            if not startup.done():
                startup.cancel()
            await asyncio.gather(startup, return_exceptions=True)
            await poller.aclose()

    async def _start(self, cwd: Path) -> None:
        """Starts every process at once (the learner waits for replay, actors for the learner:
        their imports and jit compilations overlap), then waits until all answer /healthz."""
        for child in self.children:
            child.start(cwd)
        self.watch.services = self._services()
        self.watch.write_config()
        await asyncio.gather(
            *(
                wait_healthy(c, timeout_s=self.opts.start_timeout_s, headers=self.headers)
                for c in self.children
            )
        )
        self.healthy_at_s = self.watch.elapsed()

    def _startup_failure(self, error: BaseException | None) -> Outcome:
        child = error.child if isinstance(error, ChildExited) else None
        if child is None:
            hint = " (a loaded machine may need a longer --start-timeout)"
            hint = hint if isinstance(error, TimeoutError) else ""
            self.console.print(f"[red]startup failed:[/red] {error}{hint}")
        return Outcome(
            "failed", EXIT_CHILD_FAILED, child.name if child else None, self.watch.elapsed()
        )

    async def _fetch_experiment(self) -> None:
        try:
            async with httpx.AsyncClient(timeout=2.0, headers=self.headers) as http:
                response = await http.get(f"{self.learner.url}/config")
            if response.status_code == 200:
                self.watch.experiment = response.json()
                self.watch.write_config()
        except (httpx.HTTPError, ValueError):
            pass  # asked again on the next poll
