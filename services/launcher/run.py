"""``rlfleet run``: what both homes of a run share, whatever runs the agent.

A run trains one experiment either as service processes (``services/launcher/services_run.py``: replay,
learner, actors, an evaluator, watched over HTTP) or in this process (``--in-process``,
``services/launcher/inprocess.py``). Both leave the same run folder ``runs/<name>/``::

    config.json      the launcher's options, the services' addresses and the experiment (/config)
    logs/<svc>.log   stdout and stderr of each service (services only)
    learner/         the learner's RUN_DIR (metrics JSONL, TensorBoard events)
    checkpoints/     the learner's CHECKPOINT_DIR
    progress.csv     what the launcher sampled from /status (or the in-process parts), ~2/s
    progress.png     return against env steps and against wall time
    summary.json     solved?, wall seconds from the command's start, env steps, updates, returns

and show the same live display; ``Watch`` is that shared part.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.panel import Panel

from services.launcher.display import Row, make_display
from services.launcher.processes import SINGLE_THREADED
from services.launcher.progress import ProgressLog, Snapshot

# Exit codes of ``rlfleet run``.
EXIT_OK = 0  # the target was reached, or there was none and a limit ended the run
EXIT_CHILD_FAILED = 1  # a service crashed or never came up
EXIT_BAD_OPTIONS = 2  # the experiment cannot be built (agent, config, environment)
EXIT_TARGET_MISSED = 3  # a limit ended the run before the target return
EXIT_INTERRUPTED = 130  # Ctrl-C / SIGTERM before the target

MIN_EPISODES_FOR_TARGET = 100  # return_mean_100 only counts once it averages 100 episodes


@dataclass(frozen=True)
class RunOptions:
    """What ``rlfleet run`` was asked to do (saved in config.json)."""

    name: str
    runs_dir: Path = Path("runs")
    agent: str = "dqn"
    in_process: bool = False
    actors: int = 2
    num_envs: int | None = None  # None: the agent's fleet.num_envs
    evaluator: bool = True
    evaluator_nice: int = 10  # the evaluator only gets the CPU the training processes leave
    until_return: float | None = None
    target_return: float | None = None  # recorded when first reached; does not stop the run
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

    @property
    def target(self) -> float | None:
        """The return whose first crossing the summary records."""
        return self.until_return if self.until_return is not None else self.target_return

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["runs_dir"] = str(self.runs_dir)
        out["jax_cache_dir"] = self.jax_cache_dir and str(self.jax_cache_dir)
        out["token"] = "***" if self.token else None
        return out


class ResumeError(ValueError):
    """A run folder that cannot be carried on; the message says why."""


def resumed_options(run_dir: Path) -> dict[str, Any]:
    """The launcher options saved in ``run_dir/config.json``, once checked that ``run_dir``
    holds a checkpoint to resume from (the learner, in either home, restores the newest one)."""
    try:
        saved = json.loads((run_dir / "config.json").read_text())["launcher"]
    except (OSError, ValueError, KeyError) as e:
        raise ResumeError(f"{run_dir} is not a run folder with a config.json ({e})") from e
    if not any((run_dir / "checkpoints").glob("ckpt-*.msgpack")):
        raise ResumeError(f"{run_dir}/checkpoints holds no checkpoint to resume from")
    return saved


def actor_seed(seed: int, index: int) -> int:
    """The environment and policy seed of training actor ``index`` of a run seeded ``seed``."""
    return seed * 1000 + 1 + index


def evaluator_seed(seed: int) -> int:
    return seed * 1000 + 999


@dataclass
class Outcome:
    reason: str  # "target", "max-steps", "max-seconds", "interrupted", "failed"
    exit_code: int
    failed: str | None = None  # the service (or part) that failed
    stopped_at_s: float | None = None


def limit_reached(opts: RunOptions, s: Snapshot) -> Outcome | None:
    """The outcome once a snapshot shows the target return or a step or time limit."""
    r100 = s.return_mean_100
    if (
        opts.until_return is not None
        and r100 is not None
        and r100 >= opts.until_return
        and s.episodes >= MIN_EPISODES_FOR_TARGET
    ):
        return Outcome("target", EXIT_OK, stopped_at_s=s.wall_s)
    missed = EXIT_OK if opts.until_return is None else EXIT_TARGET_MISSED
    if opts.max_steps is not None and s.env_steps >= opts.max_steps:
        return Outcome("max-steps", missed, stopped_at_s=s.wall_s)
    if opts.max_seconds is not None and s.wall_s >= opts.max_seconds:
        return Outcome("max-seconds", missed, stopped_at_s=s.wall_s)
    return None


class Watch:
    """The run folder, the progress log and the live display, shared by both homes."""

    def __init__(self, opts: RunOptions, *, started_at: float, console: Console) -> None:
        self.opts = opts
        self.started_at = started_at  # time.monotonic() when the command started
        self.console = console
        self.last = Snapshot(wall_s=0.0)
        self.reached: dict[str, float] | None = None  # when return_mean_100 first hit the target
        self.experiment: dict[str, Any] | None = None
        self.services: dict[str, Any] = {}
        self._display = make_display(console, name=opts.name, target=opts.target)
        self._progress: ProgressLog | None = None

    def elapsed(self) -> float:
        return time.monotonic() - self.started_at

    def open(self) -> None:
        """Creates the run folder (a resumed run's progress.csv goes on after its old rows)."""
        self.opts.run_dir.mkdir(parents=True, exist_ok=True)
        self.write_config()
        self._progress = ProgressLog(self.opts.run_dir / "progress.csv")
        self.console.print(f"run folder: {self.opts.run_dir}", highlight=False)
        self._display.start()

    def close(self) -> None:
        self._display.stop()
        if self._progress is not None:
            self._progress.close()

    def observe(self, snapshot: Snapshot, rows: list[Row]) -> Outcome | None:
        """Records and shows one snapshot; the outcome if it reaches a limit."""
        self.last = snapshot
        assert self._progress is not None
        self._progress.record(snapshot)
        self._display.update(snapshot, rows)
        self.note_target(snapshot.wall_s, snapshot.env_steps, snapshot)
        return limit_reached(self.opts, snapshot)

    def note_target(self, wall_s: float, env_steps: int, s: Snapshot) -> None:
        """Records the first time the snapshot's return_mean_100 reaches the target."""
        target, r100 = self.opts.target, s.return_mean_100
        if (
            self.reached is None
            and target is not None
            and r100 is not None
            and r100 >= target
            and s.episodes >= MIN_EPISODES_FOR_TARGET
        ):
            self.reached = {"wall_s": round(wall_s, 2), "env_steps": env_steps}

    def write_config(self) -> None:
        config = {
            "command": sys.argv,
            "launcher": self.opts.to_json(),
            "experiment": self.experiment,
            "services": self.services,
        }
        (self.opts.run_dir / "config.json").write_text(json.dumps(config, indent=2) + "\n")

    def report(
        self,
        outcome: Outcome,
        *,
        cpu_s: dict[str, float | None],
        failed_log: tuple[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Writes summary.json and progress.png, prints the summary line; returns the summary.

        ``failed_log`` is (title, last lines) of the service that failed, shown in a panel.
        """
        s, opts = self.last, self.opts
        run_dir, target = opts.run_dir, opts.until_return
        summary = {
            "name": opts.name,
            "home": "in-process" if opts.in_process else "services",
            "agent": opts.agent,
            "env_id": opts.env_id,
            "seed": opts.seed,
            "solved": None if target is None else outcome.reason == "target",
            "target_return": opts.target,
            "target_reached": self.reached,
            "stop_reason": outcome.reason,
            "exit_code": outcome.exit_code,
            "wall_s": round(outcome.stopped_at_s or s.wall_s, 2),
            "total_wall_s": round(self.elapsed(), 2),
            "env_steps": s.env_steps,
            "learner_steps": s.learner_steps,
            "episodes": s.episodes,
            "return_mean_100": s.return_mean_100,
            "eval_return_mean": s.eval_return_mean,
            "param_version": s.param_version,
            "failed_service": outcome.failed,
            "cpu_s": {k: v and round(v, 2) for k, v in cpu_s.items()},
            "run_dir": str(run_dir),
            **(extra or {}),
        }
        if failed_log is not None:
            title, tail = failed_log
            self.console.print(
                Panel(tail or "(empty log)", title=title, border_style="red"), highlight=False
            )
        from services.launcher.plot import plot_progress  # matplotlib: only needed at the end

        try:
            plot_progress(
                run_dir / "progress.csv",
                run_dir / "progress.png",
                target=opts.target,
                title=f"rlfleet {opts.agent} on {opts.env_id} - {opts.name}",
            )
        except (OSError, ValueError) as e:
            self.console.print(f"[yellow]no plot:[/yellow] {e}")
        line = summary_line(summary)
        summary["line"] = line
        (run_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        self.console.print(line, highlight=False, soft_wrap=True)
        return summary


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
