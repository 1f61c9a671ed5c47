"""Training metrics for the user's own tools, and the Prometheus gauges of ``GET /metrics``.

``RUN_DIR/metrics.jsonl`` gets one JSON object per line (``{"time", "learner_steps", "loss", ...}``,
appended across restarts) and ``RUN_DIR/tensorboard/`` gets TensorBoard event files
(``tensorboard --logdir RUN_DIR/tensorboard``), one scalar per key, indexed by learner step.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from tensorboardX import SummaryWriter


class MetricsLogger:
    """Appends metric rows to JSONL and TensorBoard; ``None`` values are left out."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.jsonl_path = self.run_dir / "metrics.jsonl"
        self._jsonl = open(self.jsonl_path, "a", buffering=1)  # noqa: SIM115 (closed in close())
        self._tb = SummaryWriter(logdir=str(self.run_dir / "tensorboard"), flush_secs=10)

    def write(self, step: int, metrics: dict[str, float | int | None]) -> None:
        values = {k: v for k, v in metrics.items() if v is not None}  # NaN stays visible
        row = {"time": round(time.time(), 3), "learner_steps": step, **values}
        self._jsonl.write(json.dumps(row) + "\n")
        for key, value in values.items():
            self._tb.add_scalar(key, float(value), global_step=step)

    def close(self) -> None:
        self._tb.close()
        self._jsonl.close()


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    """The rows of ``RUN_DIR/metrics.jsonl`` (for plots and tests)."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


class PrometheusMetrics:
    """The learner's series in one per-app registry (so several apps can live in one process)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.learner_steps = Gauge("rlfleet_learner_steps", "SGD updates done", registry=r)
        self.param_version = Gauge("rlfleet_learner_param_version", "Published version", registry=r)
        self.updates_per_s = Gauge("rlfleet_learner_updates_per_second", "Recent rate", registry=r)
        self.actor_steps = Gauge("rlfleet_learner_actor_steps", "Reported env steps", registry=r)
        self.episodes = Gauge("rlfleet_learner_episodes", "Reported training episodes", registry=r)
        self.return_mean_100 = Gauge(
            "rlfleet_learner_return_mean_100", "Mean of the last 100 returns", registry=r
        )
        self.eval_return_mean = Gauge(
            "rlfleet_learner_eval_return_mean", "Mean recent evaluation return", registry=r
        )
        self.sgd_step_seconds = Histogram(
            "rlfleet_learner_sgd_step_seconds",
            "Wall time of one sgd_step (worker thread)",
            buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.5, 1.0),
            registry=r,
        )
        self.sample_wait_seconds = Histogram(
            "rlfleet_learner_sample_wait_seconds",
            "Time the update loop waited for a batch (0 when prefetching hides the transport)",
            buckets=(0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0),
            registry=r,
        )
        self.checkpoint_seconds = Histogram(
            "rlfleet_learner_checkpoint_seconds", "Wall time of one checkpoint write", registry=r
        )
        self.priority_update_failures = Counter(
            "rlfleet_learner_priority_update_failures",
            "Priority updates the replay refused or could not take (dropped)",
            registry=r,
        )

    def refresh(self, **values: float | None) -> None:
        """Sets the gauges named in ``values`` (``None`` -> NaN: not known yet)."""
        for name, value in values.items():
            getattr(self, name).set(float("nan") if value is None else value)
