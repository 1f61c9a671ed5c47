"""``rlfleet run --in-process``: the same agent in one process, with no HTTP and no sockets.

The parts are the services' own: the replay's memory tables (``MemoryTable``, the same samplers,
removers and rate limiter), the learner's ``Trainer`` (the same update and publishing), the
actors' ``ActingLoop`` and the agent's adders. Only the transport is gone. A notebook calls::

    from services.launcher.inprocess import train
    result = train(agent="dqn", env_id="CartPole-v1", seed=0, until_return=475)
    result.summary["wall_s"], result.episodes[-5:], result.params_hash

One thread runs the parts in rounds, in this order; nothing in a round depends on the clock, so
the same seed gives the same run bit for bit (the suite runs it twice and compares every
episode and the final parameters):

1. every training actor takes one vector step; its adder hands items over as in the services
   (``insert_batch_size``, ``insert_max_delay_s``), but on a clock that counts rounds
   (``ROUND_S`` each) instead of seconds, and they are inserted into their table; when the rate
   limiter does not admit them, the learner updates until it does;
2. the learner updates while the rate limiter admits a sample request of
   ``batch_size * batches_per_sample`` items, and sends the priorities back to the table (a
   limiter that never holds sampling back, ``min_size``, would admit updates for ever: then the
   learner updates once per round, as fast as the actors step);
3. every ``EVALUATOR_PERIOD`` rounds the evaluator takes one step.

Actors take the trainer's latest published version every ``variable_update_period`` policy
calls, as the services' ``VariableClient`` does. Stopping at the target return or a step limit
is checked every round; the wall clock only decides when to show progress, write metrics and
checkpoints, and ``--max-seconds``.
"""

from __future__ import annotations

import math
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console

from services.actor.environment import make_vector_env
from services.actor.loop import ActingLoop, records_version
from services.experiment import Experiment, build_experiment
from services.launcher.display import Row
from services.launcher.progress import Snapshot
from services.launcher.run import (
    EXIT_BAD_OPTIONS,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_TARGET_MISSED,
    MIN_EPISODES_FOR_TARGET,
    Outcome,
    RunOptions,
    Watch,
    actor_seed,
    evaluator_seed,
)
from services.learner.checkpoint import Checkpointer
from services.learner.counters import EpisodeCounters
from services.learner.logs import MetricsLogger
from services.learner.training import Trainer
from services.replay.parsing import nest_from_paths
from services.replay.storage.memory_table import MemoryTable
from shared.interfaces import Batch, Batching, Columns, Params, Placement
from shared.nest import flatten
from shared.runtime import configure_process

EVALUATOR_PERIOD = 4  # rounds per evaluator step: evaluation gets a fifth of the acting
ROUND_S = 0.001  # what one round counts as on the adders' clock (a 10 ms linger: 10 rounds)
PROGRESS_EVERY_S = 0.5
METRICS_EVERY_S = 1.0
NO_DELETES = np.empty(0, np.int64)


class LocalVariables:
    """The trainer's latest published parameters, taken every ``period`` policy calls."""

    def __init__(self, trainer: Trainer[Params], period: int) -> None:
        self._trainer = trainer
        self._period = period
        self.version, self.params = trainer.version, trainer.published

    def update(self, calls: int) -> None:
        if calls % self._period == 0:
            self.version, self.params = self._trainer.version, self._trainer.published


@dataclass
class Actor:
    """One acting loop of the run, with what it reported so far."""

    name: str
    acting: ActingLoop
    variables: LocalVariables
    evaluation: bool
    reported_steps: int = 0


class OneProcess:
    """Every part of one experiment in this process, stepped in rounds (module docstring)."""

    def __init__(self, experiment: Experiment, opts: RunOptions) -> None:
        self.experiment = experiment
        fleet = experiment.fleet
        checkpointer = Checkpointer(opts.run_dir / "checkpoints")
        self.trainer: Trainer[Params] = Trainer(
            experiment, publish=lambda version, params: params, checkpointer=checkpointer
        )
        self.trainer.publish()
        self.counters = EpisodeCounters()
        seeds = np.random.SeedSequence(opts.seed).spawn(len(experiment.tables))
        self.tables = {
            name: MemoryTable(config, np.random.default_rng(seed))
            for (name, config), seed in zip(experiment.tables.items(), seeds, strict=True)
        }
        self.sampled = self.tables[experiment.agent.learner.table]
        self.request_size = fleet.batch_size * fleet.batches_per_sample
        self.unbounded = not math.isfinite(
            experiment.tables[experiment.agent.learner.table].limiter.min_diff
        )
        num_envs = opts.num_envs or fleet.num_envs
        self.actors = [
            self._actor(f"actor-{i}", actor_seed(opts.seed, i), Placement(num_envs, i, opts.actors))
            for i in range(opts.actors)
        ]
        self.evaluator = None
        if opts.evaluator:
            placement = Placement(fleet.num_envs)
            self.evaluator = self._actor("evaluator", evaluator_seed(opts.seed), placement, True)
        self.inserted: dict[str, int] = {}  # items stored, by actor
        self.rounds = 0
        self.episodes: list[tuple[str, float, int]] = []  # (actor, return, length), in order

    def _actor(self, name: str, seed: int, placement: Placement, evaluation: bool = False) -> Actor:
        agent, fleet = self.experiment.agent, self.experiment.fleet
        env = make_vector_env(self.experiment.env_id, placement.num_envs)
        adder = None
        if not evaluation:
            batching = Batching(
                fleet.insert_batch_size, fleet.insert_max_delay_s, lambda: self.rounds * ROUND_S
            )
            sinks = {table: self._sink(name, table) for table in agent.tables}
            adder = agent.make_adder(sinks, placement.num_envs, batching)
        variables = LocalVariables(self.trainer, fleet.variable_update_period)
        policy = agent.evaluation_policy if evaluation else agent.policy
        acting = ActingLoop(
            env, policy, variables, adder, seed=seed, placement=placement,
            record_version=not evaluation and records_version(agent.tables),
        )  # fmt: skip
        return Actor(name, acting, variables, evaluation)

    def _sink(self, actor: str, table: str):
        def insert(columns: Columns) -> None:
            leaves = dict(flatten(columns))
            n = len(next(iter(leaves.values())))
            store = self.tables[table]
            template = None
            if store.signature is None:  # the first insert fixes the signature, as in replay
                specs = {
                    p: {"dtype": c.dtype.str, "shape": list(c.shape[1:])} for p, c in leaves.items()
                }
                template = nest_from_paths(specs)
            while store.insert(leaves, np.ones(n), template) is None:
                if not self._learn_once():
                    raise RuntimeError(
                        f"{n} items from {actor} can never be admitted into {table!r} and the"
                        " learner cannot sample: the rate limiter deadlocks"
                    )
            self.inserted[actor] = self.inserted.get(actor, 0) + n

        return insert

    # ---- one round -----------------------------------------------------------------------------

    def round(self) -> None:
        for actor in self.actors:
            actor.acting.step()
            self._report(actor)
        while self._learn_once() and not self.unbounded:
            pass
        if self.evaluator is not None and self.rounds % EVALUATOR_PERIOD == 0:
            self.evaluator.acting.step()
            self._report(self.evaluator)
        self.rounds += 1

    def _learn_once(self) -> bool:
        result = self.sampled.sample(self.request_size)
        if result is None:
            return False
        batch = Batch(nest_from_paths(result.columns), result.probabilities.astype(np.float32))
        priorities = self.trainer.update(batch)
        if priorities is not None:
            self.sampled.mutate(result.keys, priorities, NO_DELETES)
        return True

    def _report(self, actor: Actor) -> None:
        acting = actor.acting
        returns = []
        while acting.finished:
            episode = acting.finished.popleft()
            returns.append(episode["return"])
            self.episodes.append((actor.name, episode["return"], int(episode["length"])))
        self.counters.report(
            actor.name, acting.steps - actor.reported_steps, returns, evaluation=actor.evaluation
        )
        actor.reported_steps = acting.steps

    # ---- what the display and the summary read -------------------------------------------------

    def snapshot(self, wall_s: float, rates: dict[str, float]) -> Snapshot:
        c = self.counters
        learner = {
            "phase": "running",
            "learner_steps": self.trainer.steps,
            "param_version": self.trainer.version,
            "updates_per_s": rates.get("learner", 0.0),
            "actor_steps": c.actor_steps,
            "episodes": c.episodes,
            "return_mean_100": c.return_mean_100,
            "eval_return_mean": c.eval_return_mean,
            "policy_lag": self.trainer.policy_lag,
        }

        def status(actor: Actor) -> dict[str, Any]:
            return {
                "state": "acting",
                "steps": actor.acting.steps,
                "steps_per_s": rates.get(actor.name, 0.0),
                "episodes": actor.acting.episodes,
                "param_version": actor.variables.version,
                "inserted_items": self.inserted.get(actor.name, 0),
            }

        tables = [
            {
                "name": name,
                "size": t.size,
                "num_inserts": t.inserts,
                "rate_limiter": {"waiting_inserts": 0, "waiting_samples": 0},
            }
            for name, t in self.tables.items()
        ]
        return Snapshot(
            wall_s=wall_s,
            learner=learner,
            actors={a.name: status(a) for a in self.actors},
            evaluator=status(self.evaluator) if self.evaluator else None,
            tables=tables,
        )

    def counts(self) -> dict[str, int]:
        """What rates are measured from: learner steps and each actor's env steps."""
        everyone = [*self.actors, *([self.evaluator] if self.evaluator else [])]
        return {"learner": self.trainer.steps, **{a.name: a.acting.steps for a in everyone}}

    def close(self) -> None:
        for actor in [*self.actors, *([self.evaluator] if self.evaluator else [])]:
            actor.acting.close()


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
    ``checkpoint_every_s``). The run folder is ``runs_dir/name`` (default: a timestamp).
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
