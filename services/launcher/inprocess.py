"""``rlfleet run --in-process``: the same agent in one process, with no HTTP and no sockets.

The run folder, display, metrics, checkpoints, plot and summary are the services' (``Watch``,
services/launcher/run.py); the parts, stepped in rounds in one thread so that the same seed gives
the same run bit for bit, are in services/launcher/rounds.py. A notebook calls::

    from services.launcher.inprocess import train
    result = train(agent="dqn", env_id="CartPole-v1", seed=0, until_return=475)
    result.summary["wall_s"], result.episodes[-5:], result.params_hash

Stopping at the target return or a step limit is checked every round; the wall clock only
decides when to show progress, write metrics and checkpoints, and ``--max-seconds``.
"""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from services.experiment import build_experiment
from services.launcher.display import Row
from services.launcher.progress import Snapshot
from services.launcher.rounds import OneProcess
from services.launcher.run import (
    EXIT_BAD_OPTIONS,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_TARGET_MISSED,
    MIN_EPISODES_FOR_TARGET,
    Outcome,
    RunOptions,
    Watch,
)
from services.learner.logs import MetricsLogger
from shared.interfaces import Params
from shared.runtime import configure_process

PROGRESS_EVERY_S = 0.5
METRICS_EVERY_S = 1.0


@dataclass
class Result:
    """What ``train`` returns: the summary (as summary.json), every episode, the parameters."""

    summary: dict[str, Any]
    episodes: list[tuple[str, float, int]]  # (actor name, return, length) in the order they ended
    params: Params  # the final published parameters, as numpy arrays
    params_hash: str  # sha256 of their bytes


class InProcessRun:
    """One ``rlfleet run --in-process``: build, run in rounds, watch, report."""

    def __init__(
        self, opts: RunOptions, *, started_at: float, console: Console, handle_signals: bool
    ) -> None:
        self.opts = opts
        self.watch = Watch(opts, started_at=started_at, console=console)
        self.console = console
        self._handle_signals = handle_signals
        self._stop_reason: str | None = None
        self.result: Result | None = None

    def _on_signal(self, signum: int, frame: Any) -> None:
        self._stop_reason = f"interrupted ({signal.Signals(signum).name})"

    def execute(self) -> int:
        opts = self.opts
        try:
            experiment = build_experiment(
                opts.agent, opts.env_id, seed=opts.seed, overrides=opts.agent_config
            )
        except ValueError as e:
            self.console.print(f"[red]cannot run:[/red] {e}", highlight=False)
            return EXIT_BAD_OPTIONS
        self.watch.experiment = experiment.describe()
        self.watch.services = {"in-process": {"pid": os.getpid()}}
        self.watch.open()
        previous = {}
        if self._handle_signals:
            for sig in (signal.SIGINT, signal.SIGTERM):
                previous[sig] = signal.signal(sig, self._on_signal)
        logger = MetricsLogger(opts.run_dir / "learner")
        run = None
        try:
            run = OneProcess(experiment, opts)
            outcome = self._loop(run, logger)
        finally:
            self.watch.close()
            logger.close()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        run.trainer.save(run.counters, run.trainer.snapshot())
        run.close()
        params = run.trainer.learner.params(run.trainer.state)
        import jax

        summary = self.watch.report(
            outcome,
            cpu_s={"in-process": time.process_time()},
            extra={"rounds": run.rounds, "params_hash": run.trainer.params_hash()},
        )
        self.result = Result(summary, run.episodes, jax.device_get(params), summary["params_hash"])
        return outcome.exit_code

    def _loop(self, run: OneProcess, logger: MetricsLogger) -> Outcome:
        opts, watch, counters = self.opts, self.watch, run.counters
        missed = EXIT_OK if opts.until_return is None else EXIT_TARGET_MISSED
        every = opts.checkpoint_every_s or 30.0
        next_progress = next_metrics = 0.0
        next_checkpoint = time.monotonic() + every
        before, before_at = run.counts(), time.monotonic()
        rates: dict[str, float] = {}
        try:
            while True:
                run.round()
                r100, episodes = counters.return_mean_100, counters.episodes
                enough = r100 is not None and episodes >= MIN_EPISODES_FOR_TARGET
                if opts.target is not None and watch.reached is None and enough:
                    watch.note_target(watch.elapsed(), counters.actor_steps, self._now(run, rates))
                if opts.until_return is not None and enough and r100 >= opts.until_return:
                    watch.last = self._now(run, rates)
                    return Outcome("target", EXIT_OK, stopped_at_s=watch.elapsed())
                if opts.max_steps is not None and counters.actor_steps >= opts.max_steps:
                    watch.last = self._now(run, rates)
                    return Outcome("max-steps", missed, stopped_at_s=watch.elapsed())
                now = time.monotonic()
                if now >= next_progress:
                    counts = run.counts()
                    if now > before_at:
                        rates = {k: (v - before[k]) / (now - before_at) for k, v in counts.items()}
                    before, before_at = counts, now
                    snapshot = self._now(run, rates)
                    outcome = watch.observe(snapshot, self._rows(snapshot))
                    if outcome is not None and outcome.reason == "max-seconds":
                        return outcome
                    next_progress = now + PROGRESS_EVERY_S
                if now >= next_metrics:
                    _write_metrics(logger, run, rates.get("learner", 0.0))
                    next_metrics = now + METRICS_EVERY_S
                if now >= next_checkpoint:
                    run.trainer.save(counters, run.trainer.snapshot())
                    next_checkpoint = now + every
                if self._stop_reason is not None:
                    watch.last = self._now(run, rates)
                    return Outcome(
                        self._stop_reason, EXIT_INTERRUPTED, stopped_at_s=watch.elapsed()
                    )
        except KeyboardInterrupt:  # a notebook's interrupt (the CLI handles SIGINT itself)
            watch.last = self._now(run, rates)
            return Outcome("interrupted", EXIT_INTERRUPTED, stopped_at_s=watch.elapsed())
        finally:  # the updates since the last row, so a short run still leaves one
            _write_metrics(logger, run, rates.get("learner", 0.0))

    def _now(self, run: OneProcess, rates: dict[str, float]) -> Snapshot:
        return run.snapshot(self.watch.elapsed(), rates)

    @staticmethod
    def _rows(s: Snapshot) -> list[Row]:
        rows = [
            Row("replay", "replay", "in process", {"tables": s.tables}),
            Row("learner", "learner", "in process", s.learner),
        ]
        rows += [Row(name, "actor", "in process", status) for name, status in s.actors.items()]
        if s.evaluator is not None:
            rows.append(Row("evaluator", "actor", "in process", s.evaluator))
        return rows


def _write_metrics(logger: MetricsLogger, run: OneProcess, updates_per_s: float) -> None:
    means = run.trainer.take_metrics()
    if means is None:
        return
    c = run.counters
    logger.write(
        run.trainer.steps,
        {
            **means,
            "updates_per_s": updates_per_s,
            "param_version": run.trainer.version,
            "actor_steps": c.actor_steps,
            "episodes": c.episodes,
            "return_mean_100": c.return_mean_100,
            "eval_return_mean": c.eval_return_mean,
            "table_size": run.sampled.size,
        },
    )


def train(
    agent: str = "dqn",
    env_id: str = "CartPole-v1",
    *,
    name: str | None = None,
    runs_dir: Path | str = "runs",
    console: Console | None = None,
    **options: Any,
) -> Result:
    """Trains in this process, as ``rlfleet run --in-process`` does, and returns the result.

    ``options`` are ``RunOptions`` fields (``seed``, ``actors``, ``num_envs``, ``agent_config``,
    ``until_return``, ``target_return``, ``max_steps``, ``max_seconds``, ``evaluator``,
    ``checkpoint_every_s``). The run folder is ``runs_dir/name`` (default: a timestamp); one
    that holds checkpoints is resumed from the newest (``rlfleet run --resume``).
    """
    from datetime import datetime

    configure_process()  # as every service: inline JAX dispatch (XLA_FLAGS only before JAX starts)
    opts = RunOptions(
        name=name or datetime.now().strftime("%Y%m%d-%H%M%S-%f"),
        runs_dir=Path(runs_dir),
        agent=agent,
        env_id=env_id,
        in_process=True,
        **options,
    )
    run = InProcessRun(
        opts, started_at=time.monotonic(), console=console or Console(), handle_signals=False
    )
    code = run.execute()
    if run.result is None:
        raise ValueError(f"the run could not start (exit code {code}); see the message above")
    return run.result
