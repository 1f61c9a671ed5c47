"""The in-process home's parts, stepped in rounds: the same agent in one thread, reproducibly.

The parts are the services' own: the replay's memory tables (``MemoryTable``, the same samplers,
removers and rate limiter), the learner's ``Trainer`` (the same update and publishing), the
actors' ``ActingLoop`` and the agent's adders. Only the transport is gone. One thread runs them
in rounds, in this order; nothing in a round depends on the clock, so the same seed gives the
same run bit for bit (the suite runs it twice and compares every episode and the parameters):

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
calls, as the services' ``VariableClient`` does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from services.actor.environment import make_vector_env
from services.actor.loop import ActingLoop, records_version
from services.experiment import Experiment
from services.launcher.progress import Snapshot
from services.launcher.run import RunOptions, actor_seed, evaluator_seed
from services.learner.checkpoint import Checkpointer
from services.learner.counters import EpisodeCounters
from services.learner.training import Trainer
from services.replay.parsing import nest_from_paths
from services.replay.storage.memory_table import MemoryTable
from shared.interfaces import Batch, Batching, Columns, Params, Placement
from shared.nest import flatten

EVALUATOR_PERIOD = 4  # rounds per evaluator step: evaluation gets a fifth of the acting
ROUND_S = 0.001  # what one round counts as on the adders' clock (a 10 ms linger: 10 rounds)
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
        self.counters = EpisodeCounters()
        self.trainer.resume(self.counters)  # the newest checkpoint of the run folder, if any
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
            self._actor(
                f"actor-{i}",
                actor_seed(opts.seed, i),
                Placement(num_envs, i, opts.actors, self.counters.actor_steps),  # resumed: > 0
            )
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
