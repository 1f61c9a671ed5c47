"""Hands the adders' insert requests to the replay service, off the acting loop's critical path.

The acting loop (a task on the same event loop) calls ``put(columns)``, which queues the request
and returns at once; ``concurrency`` sender tasks post queued requests with
``ReplayClient.insert``. When ``max_pending`` requests are queued or in flight the writer is
``full``, and the acting loop awaits ``wait_for_room()`` before its next step: that is the
back-pressure that slows acting down to what replay admits.

Per request, until it is stored:
- 429 ``RateLimited`` (the rate limiter wants more sampling first): ask again; not an error.
- ``ConnectionFailed`` / ``ServiceUnavailable`` (replay restarting): retry with backoff.
- ``NotFound`` (replay restarted in memory without the table): create the table, then retry.
- anything else (422 signature mismatch, 401, 409): a fault; the writer fails and so does acting.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from shared.clients import ReplayClient
from shared.errors import (
    ConnectionFailed,
    NotFound,
    RateLimited,
    ServiceError,
    ServiceUnavailable,
)
from shared.interfaces import Columns

log = logging.getLogger(__name__)


class WriterClosed(RuntimeError):
    """The writer stopped taking requests (shutdown deadline passed, or it failed)."""


class InsertWriter:
    def __init__(
        self,
        replay: ReplayClient,
        table: str,
        *,
        table_config: dict[str, Any] | None,
        max_pending: int,
        concurrency: int,
        timeout_s: float,
        max_backoff_s: float = 5.0,
    ) -> None:
        self._replay = replay
        self._table = table
        self._table_config = table_config
        self._queue: asyncio.Queue[Columns] = asyncio.Queue()
        self._max_pending = max_pending
        self._requests = 0  # queued or in flight
        self._room = asyncio.Event()  # set whenever a request is done
        self._concurrency = concurrency
        self._timeout_s = timeout_s
        self._max_backoff_s = max_backoff_s
        self._senders: list[asyncio.Task[None]] = []
        self._closed = False
        self.inserted_items = 0
        self.pending_items = 0  # queued or in flight
        self.rate_limited = 0  # 429 answers (back-pressure)
        self.retries = 0  # requests sent again after a connection failure / 5xx
        self.dropped_items = 0  # given up at shutdown
        self.blocked_s = 0.0  # time acting waited for room (back-pressure)
        self.last_error: str | None = None
        self.failure: BaseException | None = None

    @property
    def table(self) -> str:
        return self._table

    def start(self) -> None:
        self._senders = [
            asyncio.create_task(self._send_forever(), name=f"insert-sender-{i}")
            for i in range(self._concurrency)
        ]

    @property
    def full(self) -> bool:
        """``max_pending`` requests are queued or in flight: acting should wait for room."""
        return self._requests >= self._max_pending

    def put(self, columns: Columns) -> None:
        """Queues one insert request and returns at once (call from the event loop's thread)."""
        if not self._senders:
            raise RuntimeError("InsertWriter.put before start()")
        if self._closed:
            raise WriterClosed(self._closed_reason()) from self.failure
        self._requests += 1
        self.pending_items += len(next(iter(columns.values())))
        self._queue.put_nowait(columns)

    async def wait_for_room(self, timeout_s: float) -> bool:
        """Waits up to ``timeout_s`` until the writer is not ``full``; False if it still is.

        Raises ``WriterClosed`` once the writer failed or was closed.
        """
        started = time.monotonic()
        try:
            async with asyncio.timeout(timeout_s):
                while self.full and not self._closed:
                    self._room.clear()
                    await self._room.wait()
        except TimeoutError:
            pass
        finally:
            self.blocked_s += time.monotonic() - started
        if self._closed:
            raise WriterClosed(self._closed_reason()) from self.failure
        return not self.full

    def _closed_reason(self) -> str:
        if self.failure is not None:
            return f"inserting into {self._table!r} failed: {self.failure}"
        return "the writer was closed"

    async def drain(self, timeout_s: float) -> None:
        """Waits up to ``timeout_s`` for every queued request to be stored, then stops."""
        try:
            async with asyncio.timeout(timeout_s):
                await self._queue.join()
        except TimeoutError:
            log.warning(
                "shutdown: %d items not stored in %.0f s are dropped", self.pending_items, timeout_s
            )
        await self.aclose()

    async def aclose(self) -> None:
        self._closed = True
        self._room.set()  # wakes acting waiting for room: it sees the writer closed
        for task in self._senders:
            task.cancel()
        await asyncio.gather(*self._senders, return_exceptions=True)
        self._senders = []
        while not self._queue.empty():
            self._queue.get_nowait()
            self._queue.task_done()
        self._requests = 0
        self.dropped_items += self.pending_items
        self.pending_items = 0

    async def _send_forever(self) -> None:
        while True:
            columns = await self._queue.get()
            n = len(next(iter(columns.values())))
            try:
                await self._send(columns)
            except ServiceError as e:
                self.failure = e
                self.last_error = f"insert: {e}"
                log.error("inserting into %r failed; acting stops: %s", self._table, e)
                self._closed = True
                return
            finally:
                self.pending_items -= n
                self._requests -= 1
                self._queue.task_done()
                self._room.set()
            self.inserted_items += n

    async def _send(self, columns: Columns) -> None:
        delay = 0.1
        create_table = False
        while True:
            try:
                if create_table:
                    await self._replay.create_table(self._table, self._table_config)
                    create_table = False
                await self._replay.insert(self._table, data=columns, timeout_s=self._timeout_s)
                if self.failure is None:
                    self.last_error = None  # replay is back
                return
            except RateLimited:
                self.rate_limited += 1
                await asyncio.sleep(0.01)
            except NotFound:
                if self._table_config is None:
                    raise
                log.warning("table %r not found (replay restarted?): creating it", self._table)
                create_table = True
            except (ConnectionFailed, ServiceUnavailable) as e:
                self.retries += 1
                self.last_error = f"insert: {e}"
                log.warning("replay unreachable, retrying in %.1f s: %s", delay, e)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._max_backoff_s)
