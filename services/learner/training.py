"""The learner's state and the code that changes it, the same in both homes.

The learner service (``LearnerLoop``: replay over HTTP, an update thread) and the in-process
runner (``services/launcher/rounds.py``: the replay table in the same process) both train
through one ``Trainer``::

    trainer = Trainer(experiment, publish=..., checkpointer=...)
    trainer.resume(counters)            # the newest checkpoint, if any; then version 1 (or next)
    priorities = trainer.update(batch)  # the agent's update on one sample request; every
                                        # fleet.publish_every batches a new parameter version
    trainer.save(counters)              # a consistent checkpoint (taken between two updates)

``steps`` counts learner batches of ``fleet.batch_size`` items (a request of k batches is k
steps). Items that carry ``param_version`` (the version of the parameters that acted; an agent
asks for it by naming it in its table's signature) give the policy lag of what the learner
consumes: this version minus theirs, reported as ``policy_lag_mean`` and ``policy_lag_max``. ``publish(version, params)`` turns the agent's ``learner.params(state)`` into what the
home serves (encoded bytes for ``GET /params``; the arrays themselves in one process). Only the
thread that calls ``update`` writes the state; ``_lock`` keeps (state, steps, version, metric
sums) consistent for the readers (checkpoints, reports) on other threads.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, Generic, TypeVar

import jax
import numpy as np

from services.experiment import Experiment, describe_spec
from services.learner.checkpoint import (
    VERSION_LEASE,
    Checkpointer,
    check_compatible,
    state_from_nest,
)
from services.learner.counters import EpisodeCounters
from shared.config import config_to_dict
from shared.interfaces import Batch, Params

P = TypeVar("P")


class Trainer(Generic[P]):
    """Owns the training state of one experiment; see the module docstring."""

    def __init__(
        self,
        experiment: Experiment,
        *,
        publish: Callable[[int, Params], P],
        checkpointer: Checkpointer | None = None,
    ) -> None:
        self.experiment = experiment
        self.learner = experiment.agent.learner
        self.batch_size = experiment.fleet.batch_size
        self.publish_every = experiment.fleet.publish_every
        self.checkpointer = checkpointer
        self._publish = publish
        self.state = self.learner.init(jax.random.PRNGKey(experiment.seed))
        self.steps = 0
        self.version = 0
        self.published: P | None = None
        self.last_checkpoint: dict[str, Any] | None = None
        self.policy_lag: dict[str, float] | None = None  # of the last batch, when items say it
        self._leased = 0
        self._lock = threading.Lock()
        self._sums: dict[str, float] = {}
        self._sum_count = 0
        self._lag_max = -1  # the largest policy lag since the last take_metrics

    def header(self) -> dict[str, Any]:
        """What identifies the experiment in a checkpoint (and must match to resume)."""
        e = self.experiment
        return {
            "agent": e.agent_name,
            "agent_config": config_to_dict(e.config),
            "env_id": e.env_id,
            "env_spec": describe_spec(e.spec),
        }

    # ---- training ------------------------------------------------------------------------------

    def update(self, batch: Batch) -> np.ndarray | None:
        """One agent update on one sample request; returns its priorities (n,) or None."""
        k = len(next(iter(jax.tree.leaves(batch.data)))) // self.batch_size
        state, metrics, priorities = self.learner.update(self.state, batch)
        metrics = {name: float(v) for name, v in jax.device_get(metrics).items()}
        if isinstance(batch.data, dict) and "param_version" in batch.data:
            lag = self.version - np.asarray(batch.data["param_version"], np.int64)
            metrics["policy_lag_mean"] = float(lag.mean())
            self.policy_lag = {"mean": metrics["policy_lag_mean"], "max": int(lag.max())}
            self._lag_max = max(self._lag_max, int(lag.max()))
        published = None
        if (self.steps + k) // self.publish_every > self.steps // self.publish_every:
            published = self._publish_version(self.learner.params(state), self.version + 1)
        with self._lock:
            self.state, self.steps = state, self.steps + k
            if published is not None:
                self.version, self.published = published
            for name, value in metrics.items():
                self._sums[name] = self._sums.get(name, 0.0) + value
            self._sum_count += 1
        if priorities is None:
            return None
        return np.asarray(priorities, dtype=np.float64).reshape(-1)

    def publish(self) -> None:
        """Publishes the current parameters as the next version (at start, after a resume)."""
        self.version, self.published = self._publish_version(
            self.learner.params(self.state), self.version + 1
        )

    def _publish_version(self, params: Params, version: int) -> tuple[int, P]:
        if self.checkpointer is not None and version > self._leased:
            self._leased = version + VERSION_LEASE
            self.checkpointer.lease_versions(self._leased)
        return version, self._publish(version, params)

    def take_metrics(self) -> dict[str, float] | None:
        """The means of the update metrics since the last call (None if there was no update)."""
        with self._lock:
            if self._sum_count == 0:
                return None
            means = {name: total / self._sum_count for name, total in self._sums.items()}
            if self._lag_max >= 0:
                means["policy_lag_max"] = float(self._lag_max)
            self._sums, self._sum_count, self._lag_max = {}, 0, -1
        return means

    def params_hash(self) -> str:
        """sha256 over the published parameters' bytes, leaf by leaf (reproducibility checks)."""
        digest = hashlib.sha256()
        for leaf in jax.tree.leaves(jax.device_get(self.learner.params(self.state))):
            digest.update(np.ascontiguousarray(leaf).tobytes())
        return digest.hexdigest()

    # ---- checkpoints ---------------------------------------------------------------------------

    def resume(self, counters: EpisodeCounters) -> None:
        """Restores the newest checkpoint, if any; then publishes the current parameters."""
        if self.checkpointer is not None:
            self._leased = self.version = self.checkpointer.leased_version()
            found = self.checkpointer.load_latest()
            if found is not None:
                path, ckpt = found
                check_compatible(path, ckpt, self.header())
                self.state = state_from_nest(self.state, ckpt["training_state"])
                self.steps = int(ckpt["step"])
                self.version = max(self.version, int(ckpt["param_version"]))
                counters.restore(ckpt["counters"])
                self.last_checkpoint = {"step": self.steps, "path": str(path)}
        self.publish()

    def snapshot(self) -> tuple[Any, int, int]:
        """(state, steps, version), consistent: taken between two updates."""
        with self._lock:
            return self.state, self.steps, self.version

    def save(self, counters: EpisodeCounters, snapshot: tuple[Any, int, int]) -> Path:
        """Writes ``snapshot`` with the counters (blocking I/O: call it off the event loop)."""
        assert self.checkpointer is not None
        state, step, version = snapshot
        header = {
            **self.header(),
            "step": step,
            "param_version": version,
            "counters": counters.save(),
        }
        path = self.checkpointer.save_state(header, state)
        self.last_checkpoint = {"step": step, "path": str(path)}
        return path
