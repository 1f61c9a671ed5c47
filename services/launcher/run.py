"""``rlfleet run``: replay, learner, actors and an evaluator as local processes, watched to the end.

The run folder ``runs/<name>/`` holds everything about one run::

    config.json      the launcher's options, the services' addresses and the learner's /config
    logs/<svc>.log   stdout and stderr of each service
    learner/         the learner's RUN_DIR (metrics JSONL, TensorBoard events)
    checkpoints/     the learner's CHECKPOINT_DIR
    progress.csv     what the launcher sampled from /status, about twice a second
    progress.png     return against env steps and against wall time
    summary.json     solved?, wall seconds from the command's start, env steps, updates, returns
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.panel import Panel

from services.launcher.display import make_display
from services.launcher.processes import (
    SINGLE_THREADED,
    Child,
    ChildExited,
    child_env,
    free_port,
    jax_cache_env,
    stop_children,
    wait_healthy,
)
from services.launcher.progress import Poller, ProgressLog, Snapshot

# Exit codes of ``rlfleet run``.
EXIT_OK = 0  # the target was reached, or there was none and a limit ended the run
EXIT_CHILD_FAILED = 1  # a service crashed or never came up
EXIT_TARGET_MISSED = 3  # a limit ended the run before the target return
EXIT_INTERRUPTED = 130  # Ctrl-C / SIGTERM before the target

PROJECT_ROOT = Path(__file__).resolve().parents[2]  # where `services` is importable
MIN_EPISODES_FOR_TARGET = 100  # return_mean_100 only counts once it averages 100 episodes


@dataclass(frozen=True)
class RunOptions:
    """What ``rlfleet run`` was asked to do (saved in config.json)."""

    name: str
    runs_dir: Path = Path("runs")
    actors: int = 2
    num_envs: int | None = None  # None: the agent config's num_envs
    evaluator: bool = True
    evaluator_nice: int = 10  # the evaluator only gets the CPU the training processes leave
    until_return: float | None = None
    max_steps: int | None = None
    max_seconds: float | None = None
    redis_url: str | None = None
    seed: int = 0
    env_id: str = "CartPole-v1"
    agent_config: dict[str, Any] = field(default_factory=dict)
    token: str | None = None
    checkpoint_every_s: float | None = None  # None: the learner's default
    grace_s: float = 10.0
    poll_every_s: float = 0.5
    start_timeout_s: float = 120.0
    log_level: str = "info"
    threads: dict[str, str] = field(default_factory=lambda: dict(SINGLE_THREADED))
    extra_env: dict[str, dict[str, str]] = field(default_factory=dict)  # by module or "all"
    jax_cache_dir: Path | None = None  # None: compile everything afresh

    @property
    def run_dir(self) -> Path:
        return self.runs_dir / self.name

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["runs_dir"] = str(self.runs_dir)
        out["jax_cache_dir"] = self.jax_cache_dir and str(self.jax_cache_dir)
        out["token"] = "***" if self.token else None
        return out


@dataclass
class Outcome:
    reason: str  # "target", "max-steps", "max-seconds", "interrupted", "failed"
    exit_code: int
    failed: Child | None = None
    stopped_at_s: float | None = None


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
                "SEED": str(opts.seed * 1000 + 1 + i),
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
                "SEED": str(opts.seed * 1000 + 999),
                "ROLE": "evaluator",
            },
            nice=opts.evaluator_nice,
        )
    return replay, learner, actors, evaluator


class Run:
    """One ``rlfleet run``: start, watch, stop, report."""

    def __init__(self, opts: RunOptions, *, started_at: float, console: Console) -> None:
        self.opts = opts
        self.started_at = started_at  # time.monotonic() when the command started
        self.console = console
        self.replay, self.learner, self.actors, self.evaluator = plan_children(opts)
        self.children = [self.replay, self.learner, *self.actors]
        if self.evaluator:
            self.children.append(self.evaluator)
        self.headers = {"Authorization": f"Bearer {opts.token}"} if opts.token else {}
        self._stop = asyncio.Event()
        self._force = asyncio.Event()
        self._stop_reason: str | None = None
        self._experiment: dict[str, Any] | None = None
        self.last = Snapshot(wall_s=0.0)
        self.healthy_at_s: float | None = None  # when every service first answered /healthz
        self._cpu_s: dict[str, float | None] = {}  # CPU seconds of each service at the stop

    def elapsed(self) -> float:
        return time.monotonic() - self.started_at

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
        self.opts.run_dir.mkdir(parents=True, exist_ok=True)
        self._write_config()
        progress = ProgressLog(self.opts.run_dir / "progress.csv")
        outcome = Outcome("failed", EXIT_CHILD_FAILED)
        try:
            outcome = await self._start_and_watch(progress)
        finally:
            progress.close()
            self._cpu_s = {c.name: c.cpu_seconds() for c in self.children}
            self._cpu_s["launcher"] = time.process_time()
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
        return self._report(outcome)

    async def _start_and_watch(self, progress: ProgressLog) -> Outcome:
        display = make_display(self.console, name=self.opts.name, target=self.opts.until_return)
        poller = Poller(
            replay_url=self.replay.url,
            learner_url=self.learner.url,
            actor_urls={a.name: a.url for a in self.actors},
            evaluator_url=self.evaluator.url if self.evaluator else None,
            headers=self.headers,
        )
        self.console.print(f"run folder: {self.opts.run_dir}", highlight=False)
        try:
            startup = asyncio.create_task(self._start(PROJECT_ROOT))
            display.start()
            while True:
                failed = next((c for c in self.children if c.returncode() is not None), None)
                if failed is not None:
                    return Outcome("failed", EXIT_CHILD_FAILED, failed, self.elapsed())
                if startup.done() and startup.exception() is not None:
                    return self._startup_failure(startup.exception())
                self.last = await poller.poll(self.elapsed())
                progress.record(self.last)
                display.update(self.last, self.children)
                if self._experiment is None and self.last.learner is not None:
                    await self._fetch_experiment()
                outcome = self._limit_reached(self.last)
                if outcome is not None:
                    return outcome
                try:
                    await asyncio.wait_for(self._stop.wait(), self.opts.poll_every_s)
                except TimeoutError:
                    continue
                return Outcome(
                    self._stop_reason or "interrupted",
                    EXIT_INTERRUPTED,
                    stopped_at_s=self.elapsed(),
                )
        finally:
            display.stop()
            if not startup.done():
                startup.cancel()
            await asyncio.gather(startup, return_exceptions=True)
            await poller.aclose()

    async def _start(self, cwd: Path) -> None:
        """Starts every process at once (the learner waits for replay, actors for the learner:
        their imports and jit compilations overlap), then waits until all answer /healthz."""
        for child in self.children:
            child.start(cwd)
        self._write_config()
        await asyncio.gather(
            *(
                wait_healthy(c, timeout_s=self.opts.start_timeout_s, headers=self.headers)
                for c in self.children
            )
        )
        self.healthy_at_s = self.elapsed()

    def _startup_failure(self, error: BaseException | None) -> Outcome:
        child = error.child if isinstance(error, ChildExited) else None
        if child is None:
            self.console.print(f"[red]startup failed:[/red] {error}")
        return Outcome("failed", EXIT_CHILD_FAILED, child, self.elapsed())

    def _limit_reached(self, s: Snapshot) -> Outcome | None:
        o = self.opts
        r100 = s.return_mean_100
        if (
            o.until_return is not None
            and r100 is not None
            and r100 >= o.until_return
            and s.episodes >= MIN_EPISODES_FOR_TARGET
        ):
            return Outcome("target", EXIT_OK, stopped_at_s=s.wall_s)
        missed = EXIT_OK if o.until_return is None else EXIT_TARGET_MISSED
        if o.max_steps is not None and s.env_steps >= o.max_steps:
            return Outcome("max-steps", missed, stopped_at_s=s.wall_s)
        if o.max_seconds is not None and s.wall_s >= o.max_seconds:
            return Outcome("max-seconds", missed, stopped_at_s=s.wall_s)
        return None

    async def _fetch_experiment(self) -> None:
        try:
            async with httpx.AsyncClient(timeout=2.0, headers=self.headers) as http:
                response = await http.get(f"{self.learner.url}/config")
            if response.status_code == 200:
                self._experiment = response.json()
                self._write_config()
        except (httpx.HTTPError, ValueError):
            pass  # asked again on the next poll

    def _write_config(self) -> None:
        config = {
            "command": sys.argv,
            "launcher": self.opts.to_json(),
            "experiment": self._experiment,
            "services": {
                c.name: {"module": c.module, "url": c.url, "pid": c.pid, "log": str(c.log_path)}
                for c in self.children
            },
        }
        (self.opts.run_dir / "config.json").write_text(json.dumps(config, indent=2) + "\n")

    # --- the end -------------------------------------------------------------------------------
    def _report(self, outcome: Outcome) -> int:
        s = self.last
        run_dir = self.opts.run_dir
        target = self.opts.until_return
        summary = {
            "name": self.opts.name,
            "solved": None if target is None else outcome.reason == "target",
            "target_return": target,
            "stop_reason": outcome.reason,
            "exit_code": outcome.exit_code,
            "wall_s": round(outcome.stopped_at_s or s.wall_s, 2),
            "total_wall_s": round(self.elapsed(), 2),
            "services_healthy_at_s": self.healthy_at_s and round(self.healthy_at_s, 2),
            "env_steps": s.env_steps,
            "learner_steps": s.learner_steps,
            "episodes": s.episodes,
            "return_mean_100": s.return_mean_100,
            "eval_return_mean": s.eval_return_mean,
            "param_version": s.param_version,
            "failed_service": outcome.failed.name if outcome.failed else None,
            "cpu_s": {k: v and round(v, 2) for k, v in self._cpu_s.items()},
            "run_dir": str(run_dir),
        }
        if outcome.failed is not None:
            child = outcome.failed
            self.console.print(
                Panel(
                    child.log_tail() or "(empty log)",
                    title=f"{child.name} exited with code {child.returncode()}"
                    f" - last lines of {child.log_path}",
                    border_style="red",
                ),
                highlight=False,
            )
        from services.launcher.plot import plot_progress  # matplotlib: only needed at the end

        try:
            plot_progress(
                run_dir / "progress.csv",
                run_dir / "progress.png",
                target=target,
                title=f"rlfleet {self.opts.env_id} - {self.opts.name}",
            )
        except (OSError, ValueError) as e:
            self.console.print(f"[yellow]no plot:[/yellow] {e}")
        line = summary_line(summary)
        summary["line"] = line
        (run_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        self.console.print(line, highlight=False, soft_wrap=True)
        return outcome.exit_code


def summary_line(s: dict[str, Any]) -> str:
    r100 = "-" if s["return_mean_100"] is None else f"{s['return_mean_100']:.1f}"
    if s["solved"]:
        head = f"solved (return_mean_100 {r100} >= {s['target_return']:g})"
    elif s["stop_reason"] == "failed":
        head = f"FAILED ({s['failed_service'] or 'startup'})"
    else:
        head = f"stopped: {s['stop_reason']} (return_mean_100 {r100})"
    return (
        f"{head} in {s['wall_s']:.1f} s, {s['env_steps']:,} env steps,"
        f" {s['learner_steps']:,} updates, {s['episodes']:,} episodes -> {s['run_dir']}"
    )
