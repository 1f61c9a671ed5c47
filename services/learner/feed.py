"""Where the learner's batches come from: the update thread calls ``feed.take(timeout_s)``.

Both feeds sample ``batch_size`` items per request with ``prefetch`` requests ahead of the update,
wait through the rate limiter (a 429 after one long-poll is asked again), report replay being
unreachable (``on_unreachable(detail)``) and the table being gone (``on_table_gone()``: the
learner creates it again), and retry with backoff meanwhile.

- ``ProcessFeed`` (the default): a sampler process hands batches over in shared memory
  (services/learner/sampler.py), so the HTTP client's work never holds the update's GIL.
- ``LoopFeed``: sampler tasks on the learner's event loop, batches through a queue. Used for
  nested signatures and with ``SAMPLE_PROCESS=false``.

``take`` returns ``(batch, release)``: call ``release()`` once the update is done with the batch.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import queue
import time
from collections.abc import Awaitable, Callable
from typing import Any

from services.learner.sampler import (
    BATCH,
    FAILED,
    NOT_FOUND,
    UNREACHABLE,
    SamplerProcess,
    sample_patiently,
)
from shared.clients import ReplayClient, SampleBatch

log = logging.getLogger("rlfleet.learner")

Taken = tuple[SampleBatch, Callable[[], None]] | None


class SamplingFailed(RuntimeError):
    """The sampler process died, or replay refused its requests: training cannot go on."""


class ProcessFeed:
    """The learner's batches from a ``SamplerProcess``: ``take`` is the update thread's source.

    Replay being unreachable and the table being gone are passed on to ``on_unreachable(detail)``
    and ``on_table_gone()`` (called from the update thread); the child keeps retrying meanwhile.
    """

    def __init__(
        self,
        *,
        on_unreachable: Callable[[str], None],
        on_table_gone: Callable[[], None],
        **process: Any,
    ) -> None:
        self._options = process
        self._on_unreachable = on_unreachable
        self._on_table_gone = on_table_gone
        self._process: SamplerProcess | None = None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    async def start(self) -> None:
        # From the event loop's thread: the child's PDEATHSIG is tied to the thread that forks.
        self._process = SamplerProcess(**self._options)
        await asyncio.to_thread(self._process.wait_ready)
        log.info("sampling in process %d", self._process.pid)

    def take(self, timeout_s: float) -> Taken:
        """The next batch and the function that gives its slot back; None after ``timeout_s``."""
        assert self._process is not None
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                kind, slot, batch, detail = self._process.get(deadline - time.monotonic())
            except RuntimeError as e:
                raise SamplingFailed(str(e)) from e
            if kind == BATCH:
                return batch, functools.partial(self._process.release, slot)
            if kind == -1:
                return None
            if kind == UNREACHABLE:
                self._on_unreachable(detail)
            elif kind == NOT_FOUND:
                self._on_table_gone()
            elif kind == FAILED:
                raise SamplingFailed(f"sampling failed: {detail}")

    async def aclose(self) -> None:
        if self._process is not None:
            await asyncio.to_thread(self._process.close)


class LoopFeed:
    """Sampler tasks on the event loop; the update thread takes their batches from a queue."""

    def __init__(
        self,
        *,
        replay: ReplayClient,
        table: str,
        batch_size: int,
        prefetch: int,
        on_unreachable: Callable[[str], None],
        on_table_gone: Callable[[], Awaitable[None]],
    ) -> None:
        self._replay = replay
        self._table = table
        self._batch_size = batch_size
        self._prefetch = prefetch
        self._on_unreachable = on_unreachable
        self._on_table_gone = on_table_gone
        self._inbox: queue.SimpleQueue[SampleBatch] = queue.SimpleQueue()
        self._slots = asyncio.Semaphore(prefetch)  # batches requested or waiting in the inbox
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._tasks = [
            asyncio.create_task(self._sample_forever(), name=f"learner-sampler-{i}")
            for i in range(self._prefetch)
        ]

    def take(self, timeout_s: float) -> Taken:
        """The next batch; its slot is freed at once (the next request starts while the update
        runs: the batch is the thread's own)."""
        try:
            sample = self._inbox.get(timeout=timeout_s)
        except queue.Empty:
            sample = None
        if sample is None:
            for task in self._tasks:  # a refusal or a bug ends a task: training cannot go on
                if task.done() and not task.cancelled() and task.exception() is not None:
                    raise SamplingFailed(f"sampling failed: {task.exception()!r}")
            return None
        self._loop.call_soon_threadsafe(self._slots.release)
        return sample, _nothing

    async def aclose(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _sample_forever(self) -> None:
        while True:
            await self._slots.acquire()  # released when the update thread takes a batch
            self._inbox.put(await self._sample())

    async def _sample(self) -> SampleBatch:
        return await sample_patiently(
            self._replay,
            self._table,
            self._batch_size,
            on_unreachable=self._on_unreachable,
            on_table_gone=self._on_table_gone,
        )


def _nothing() -> None:
    pass
