"""The learner service's training loop: sample replay over HTTP, update, publish, checkpoint.

    sampler process (services/learner/sampler.py), or PREFETCH sampler tasks on the event loop
        --batches--> update thread: Trainer.update, back to back
                         |--> every publish_every batches: a new version, encoded once
                         '--> priorities --> sender task (event loop)

The update and the publishing are the ``Trainer``'s (services/learner/training.py), the same code
the in-process runner trains with; this class adds what a service needs around it. Up to
``prefetch`` batches are requested or waiting while an update runs, so the HTTP round trip to
replay overlaps the computation. The update thread takes batches through one ``Take`` function,
whichever feed hands them over, and runs the jitted update in one dedicated thread (never on the
event loop; no loop -> thread -> loop hop per update). Parameters are encoded once per version,
so ``GET /params`` sends pre-built bytes.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jax
import numpy as np

from services.experiment import Experiment
from services.learner.checkpoint import Checkpointer
from services.learner.counters import EpisodeCounters
from services.learner.feed import LoopFeed, ProcessFeed, SamplingFailed, Taken
from services.learner.journal import ReportJournal, Reports
from services.learner.logs import MetricsLogger, PrometheusMetrics
from services.learner.sampler import MAX_BACKOFF_S, is_flat
from services.learner.training import Trainer
from shared import codec
from shared.clients import ReplayClient, SampleBatch
from shared.errors import (
    Conflict,
    ConnectionFailed,
    InvalidRequest,
    NotFound,
    ServiceUnavailable,
)
from shared.interfaces import Batch, Params

log = logging.getLogger("rlfleet.learner")

REPORT_EVERY_S = 1.0
RATE_WINDOW = 10  # updates_per_s is measured over the last RATE_WINDOW reports
PRIORITY_QUEUE = 64


@dataclass(frozen=True)
class Published:
    """One parameter version, encoded once: the body of ``GET /params``."""

    version: int
    body: bytes

    @property
    def etag(self) -> str:
        return f'"{self.version}"'


def encode_params(version: int, params: Params) -> Published:
    return Published(version, codec.encode({"version": version, "params": jax.device_get(params)}))


def batch_of(sample: SampleBatch) -> Batch:
    """What the agent's update takes from one sample answer."""
    return Batch(data=sample.data, probabilities=sample.probabilities.astype(np.float32))


class LearnerLoop:
    """Runs one experiment's ``Trainer`` against the replay service; one per learner process."""

    def __init__(
        self,
        *,
        experiment: Experiment,
        replay: ReplayClient,
        counters: EpisodeCounters,
        metrics: PrometheusMetrics,
        checkpointer: Checkpointer | None = None,
        checkpoint_every_s: float = 30.0,
        logger: MetricsLogger | None = None,
        prefetch: int = 2,
        sampler_process: bool = False,
        token: str | None = None,
    ) -> None:
        self.experiment = experiment
        self.trainer: Trainer[Published] = Trainer(
            experiment, publish=encode_params, checkpointer=checkpointer
        )
        self.tables = experiment.agent.tables
        self.table = experiment.agent.learner.table
        self.batches_per_sample = experiment.fleet.batches_per_sample
        self.replay = replay
        self.counters = counters
        self.metrics = metrics
        self.checkpointer = checkpointer
        self.checkpoint_every_s = checkpoint_every_s
        self.logger = logger
        self.prefetch = prefetch
        self.sampler_process = sampler_process and is_flat(self.tables[self.table].get("signature"))
        self._token = token
        # Reports are journaled next to the checkpoints, so that what a 200 acknowledged survives
        # a kill -9 between two checkpoints; without checkpoints nothing survives anyway.
        self.reports = Reports(
            counters, ReportJournal(checkpointer.directory) if checkpointer is not None else None
        )
        self._feed: ProcessFeed | LoopFeed | None = None
        self._recreating: Any = None  # the pending re-creation of a vanished table

        self.phase = "starting"  # -> waiting_for_replay -> running -> stopped | failed
        self.error: str | None = None
        self.table_size: int | None = None
        self.updates_per_s = 0.0
        self._rate: deque[tuple[float, int]] = deque(maxlen=RATE_WINDOW + 1)
        self._priorities: asyncio.Queue[tuple[np.ndarray, np.ndarray]] = asyncio.Queue(
            maxsize=PRIORITY_QUEUE
        )
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: list[asyncio.Task] = []
        self._save_lock = asyncio.Lock()
        self._saved_progress: tuple[int, ...] | None = None

    @property
    def steps(self) -> int:
        return self.trainer.steps

    @property
    def version(self) -> int:
        return self.trainer.version

    @property
    def published(self) -> Published | None:
        return self.trainer.published

    # ---- start, resume, stop ------------------------------------------------------------------

    def resume(self) -> None:
        """Restores the newest checkpoint, if any; then publishes the current parameters."""
        self.trainer.resume(self.counters)
        if self.trainer.last_checkpoint is not None:
            log.info(
                "resumed from %s at step %d, version %d",
                self.trainer.last_checkpoint["path"],
                self.steps,
                self.version,
            )
        recounted = self.reports.recover()
        if recounted:
            log.info(
                "counted again %d reports journaled after the checkpoint: %d actor steps in all",
                recounted,
                self.counters.actor_steps,
            )

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._tasks = [
            asyncio.create_task(self._train(), name="learner-train"),
            asyncio.create_task(self._report_every(), name="learner-report"),
        ]
        if self.checkpointer is not None:
            self._tasks.append(asyncio.create_task(self._checkpoint_every(), name="checkpoint"))
        self._tasks.append(asyncio.create_task(self._send_priorities(), name="priorities"))

    async def stop(self, *, timeout_s: float = 30.0) -> None:
        """Stops the samplers and the update thread, then writes the final checkpoint."""
        self._stopping.set()
        for task in self._tasks:
            task.cancel()
        await asyncio.wait_for(
            asyncio.gather(*self._tasks, return_exceptions=True), timeout=timeout_s
        )
        self._tasks = []
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, timeout_s)
            if self._thread.is_alive():
                raise RuntimeError(f"the update thread did not stop within {timeout_s}s")
        if self._feed is not None:
            await self._feed.aclose()
        self._report()  # the updates since the last row, so a short run still leaves one
        if self.phase != "failed":
            self.phase = "stopped"
        if self.checkpointer is not None:
            await asyncio.wait_for(self.save_checkpoint(), timeout=timeout_s)
        self.reports.close()

    @property
    def healthy(self) -> tuple[bool, str]:
        if self.phase == "running":
            return True, "ok"
        if self.phase == "failed":
            return False, f"the training loop failed: {self.error}"
        return False, f"learner is {self.phase.replace('_', ' ')} ({self.replay.base_url})"

    # ---- training ------------------------------------------------------------------------------

    async def _train(self) -> None:
        try:
            await self._ensure_tables()
            batch_size = self.experiment.fleet.batch_size * self.batches_per_sample
            if self.sampler_process:
                self._feed = ProcessFeed(
                    replay_url=self.replay.base_url,
                    token=self._token,
                    table=self.table,
                    signature=self.tables[self.table]["signature"],
                    batch_size=batch_size,
                    prefetch=self.prefetch,
                    on_unreachable=self._replay_unreachable,
                    on_table_gone=self._recreate_tables,
                )
            else:
                self._feed = LoopFeed(
                    replay=self.replay,
                    table=self.table,
                    batch_size=batch_size,
                    prefetch=self.prefetch,
                    on_unreachable=self._replay_unreachable,
                    on_table_gone=self._ensure_tables,
                )
            await self._feed.start()
            self._thread = threading.Thread(
                target=self._update_forever, args=(self._feed.take,), name="learner-update"
            )
            self._thread.start()
        except (Conflict, InvalidRequest) as e:
            self._fail(f"replay refused the learner: {e.detail}")
        except Exception as e:  # a bug: make it visible on /healthz rather than lose the task
            log.exception("sampling failed")
            self._fail(repr(e))

    def _fail(self, error: str) -> None:
        """Stops training for good (the process keeps serving; /healthz says why)."""
        self.phase, self.error = "failed", error
        self._stopping.set()
        if self._tasks and self._tasks[0] is not asyncio.current_task():
            self._tasks[0].cancel()  # the training task (table creation, the feed starting)
        log.error("training stopped: %s", error)

    async def _ensure_tables(self) -> None:
        """Creates the tables (idempotent PUT), waiting with backoff until replay answers."""
        self.phase = "waiting_for_replay"
        delay = 0.1
        for name, config in self.tables.items():
            while True:
                try:
                    await self.replay.create_table(name, config)
                    break
                except (ConnectionFailed, ServiceUnavailable) as e:
                    log.warning("replay not ready (%s); retrying in %.1fs", e, delay)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, MAX_BACKOFF_S)
        self.phase = "running"

    def _replay_unreachable(self, detail: str) -> None:
        self.phase = "waiting_for_replay"
        log.warning("sampling failed (%s); the sampler retries", detail)

    def _recreate_tables(self) -> None:
        """From the update thread: the table vanished (replay restarted); create it again once."""
        if self._recreating is None or self._recreating.done():
            log.warning("table %s is gone (replay restarted?); creating it again", self.table)
            self._recreating = asyncio.run_coroutine_threadsafe(self._ensure_tables(), self._loop)

    def _update_forever(self, take: Callable[[float], Taken]) -> None:
        """The update thread: one update per batch ``take`` hands over, back to back."""
        assert self._loop is not None
        waited = time.perf_counter()
        while not self._stopping.is_set():
            try:
                got = take(0.1)
            except SamplingFailed as e:  # the sampler process died or was refused
                self._loop.call_soon_threadsafe(self._fail, str(e))
                return
            if got is None:
                continue
            sample, release = got
            self.metrics.sample_wait_seconds.observe(time.perf_counter() - waited)
            self.phase, self.table_size = "running", sample.table_size
            try:
                self._update(sample)
            except Exception as e:  # a bug or a diverged update: make it visible on /healthz
                log.exception("update failed")
                self._loop.call_soon_threadsafe(self._fail, repr(e))
                return
            finally:
                release()
            waited = time.perf_counter()

    def _update(self, sample: SampleBatch) -> None:
        start = time.perf_counter()
        priorities = self.trainer.update(batch_of(sample))
        self.metrics.sgd_step_seconds.observe(
            (time.perf_counter() - start) / self.batches_per_sample
        )
        if priorities is not None:  # a copy: the sampler process may reuse the keys' memory
            keys = np.array(sample.keys)
            self._loop.call_soon_threadsafe(self._queue_priorities, keys, priorities)

    def _queue_priorities(self, keys: np.ndarray, priorities: np.ndarray) -> None:
        try:
            self._priorities.put_nowait((keys, priorities))
        except asyncio.QueueFull:  # the replay is slower than we are: drop, and count it
            self.metrics.priority_update_failures.inc()

    async def _send_priorities(self) -> None:
        """Sends new priorities off the hot path; queued updates are merged into one request."""
        while True:
            keys, priorities = await self._priorities.get()
            all_keys, all_priorities = [keys], [priorities]
            while not self._priorities.empty():
                keys, priorities = self._priorities.get_nowait()
                all_keys.append(keys)
                all_priorities.append(priorities)
            try:
                await self.replay.update_priorities(
                    self.table,
                    keys=np.concatenate(all_keys),
                    priorities=np.concatenate(all_priorities),
                )
            except (ConnectionFailed, ServiceUnavailable, InvalidRequest, NotFound) as e:
                self.metrics.priority_update_failures.inc(len(all_keys))
                log.warning("priority update dropped: %s", e)

    # ---- reporting and checkpoints ---------------------------------------------------------------

    async def _report_every(self) -> None:
        while True:
            await asyncio.sleep(REPORT_EVERY_S)
            self._report()

    def _report(self) -> None:
        now = time.monotonic()
        self._rate.append((now, self.steps))
        (t0, s0), (t1, s1) = self._rate[0], self._rate[-1]
        self.updates_per_s = (s1 - s0) / (t1 - t0) if t1 > t0 else 0.0
        if self.logger is None:
            return
        means = self.trainer.take_metrics()
        if means is None:
            return
        row: dict[str, float | int | None] = dict(means)
        row.update(
            updates_per_s=self.updates_per_s,
            param_version=self.version,
            actor_steps=self.counters.actor_steps,
            episodes=self.counters.episodes,
            return_mean_100=self.counters.return_mean_100,
            eval_return_mean=self.counters.eval_return_mean,
            table_size=self.table_size,
        )
        self.logger.write(self.steps, row)

    async def _checkpoint_every(self) -> None:
        while True:
            await asyncio.sleep(self.checkpoint_every_s)
            await self.save_checkpoint()

    async def save_checkpoint(self) -> None:
        """Writes the current state (consistent: taken between two updates) to disk."""
        assert self.checkpointer is not None
        async with self._save_lock:
            snapshot = self.trainer.snapshot()
            counters = self.counters.copy()  # taken here, on the loop: no report half-counted
            _, step, version = snapshot
            progress = (step, version, counters.journal_seq)
            if progress == self._saved_progress:
                return  # nothing new since the last checkpoint
            start = time.perf_counter()
            path = await asyncio.to_thread(self.trainer.save, counters, snapshot)
            self.metrics.checkpoint_seconds.observe(time.perf_counter() - start)
            self._saved_progress = progress
            await self.reports.compact(upto_seq=counters.journal_seq)
            log.info("checkpoint at step %d, version %d: %s", step, version, path)

    # ---- status --------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        return {
            "learner_steps": self.steps,
            "param_version": self.version,
            "updates_per_s": round(self.updates_per_s, 2),
            "checkpoint": self.trainer.last_checkpoint,
            "policy_lag": self.trainer.policy_lag,
            "phase": self.phase,
            "error": self.error,
            "replay": {
                "url": str(self.replay.base_url),
                "table": self.table,
                "table_size": self.table_size,
                "prefetch": self.prefetch,
                "batches_per_sample": self.batches_per_sample,
                "sampler_process": getattr(self._feed, "pid", None),
            },
        }

    def refresh_metrics(self) -> None:
        self.metrics.refresh(
            learner_steps=self.steps,
            param_version=self.version,
            updates_per_s=self.updates_per_s,
            actor_steps=self.counters.actor_steps,
            episodes=self.counters.episodes,
            return_mean_100=self.counters.return_mean_100,
            eval_return_mean=self.counters.eval_return_mean,
        )
