"""The backend-independent table layer: validation, long-polling, the shape of every answer.

Routes hand it decoded bodies; it checks them against the contract and the table's signature,
refuses at once what can never be admitted, and otherwise waits for the rate limiter::

    watch = store.watch(name)             # before the try: no change can slip in between
    result = await store.try_insert(...)  # atomic; None = not admitted now
    await watch.wait(remaining)           # woken by the sample/insert/delete that changes things

A request that times out is answered 429 and leaves nothing stored or counted. Waiting requests
are a resource: at most ``max_waiters`` of each kind (insert, sample) wait on one table; the next
one is answered 429 at once with the reason, so a flood costs no memory beyond that.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from services.replay.config import RateLimiterParams, TableConfig
from services.replay.metrics import ReplayMetrics
from services.replay.parsing import (
    MAX_TIMEOUT_MS,
    columns_form,
    items_form,
    keys_of,
    nest_from_paths,
    priorities_of,
    require_map,
    timeout_ms_of,
)
from services.replay.storage.base import Signature, TableStore, check_columns
from shared.errors import InvalidRequest, RateLimited, ServiceUnavailable

T = TypeVar("T")
MAX_BATCH_SIZE = 1 << 16
DEFAULT_MAX_WAITERS = 1024


@dataclass
class _Entry:
    """What this process keeps about one table (configs never change; tables are never deleted)."""

    config: TableConfig
    limiter: RateLimiterParams
    signature: Signature | None  # the configured one
    inserted: Any  # prometheus children
    sampled: Any
    waiting: list[int] = field(default_factory=lambda: [0, 0])  # inserts, samples


class Tables:
    """All tables of one store, as the routes see them."""

    def __init__(
        self,
        store: TableStore,
        metrics: ReplayMetrics,
        *,
        max_answer_bytes: int | None = None,
        max_waiters: int = DEFAULT_MAX_WAITERS,
        max_wait_ms: int = MAX_TIMEOUT_MS,
    ) -> None:
        self.store = store
        self.metrics = metrics
        self.max_answer_bytes = max_answer_bytes  # a sample's data is held to the body limit
        self.max_waiters = max_waiters
        self.max_wait_ms = max_wait_ms  # a longer timeout_ms waits this long
        self._entries: dict[str, _Entry] = {}
        self._stopping = asyncio.Event()

    def begin_shutdown(self) -> None:
        """Answers every request waiting for the rate limiter with 503, now and from now on."""
        self._stopping.set()

    async def _entry(self, name: str) -> _Entry:
        entry = self._entries.get(name)
        if entry is None:
            entry = self._remember(name, await self.store.get_config(name))
        return entry

    def _remember(self, name: str, config: TableConfig) -> _Entry:
        entry = self._entries[name] = _Entry(
            config=config,
            limiter=config.limiter,
            signature=config.signature_leaves(),
            inserted=self.metrics.inserted.labels(name),
            sampled=self.metrics.sampled.labels(name),
        )
        return entry

    async def config(self, name: str) -> TableConfig:
        return (await self._entry(name)).config

    async def create(self, name: str, config: TableConfig) -> bool:
        created = await self.store.create_table(name, config)
        if name not in self._entries:
            self._remember(name, config)
        return created

    async def names(self) -> list[str]:
        return await self.store.table_names()

    async def info(self, name: str) -> dict[str, Any]:
        entry = await self._entry(name)
        counters = await self.store.counters(name)
        limiter = entry.limiter
        body = entry.config.model_dump(mode="json")
        body["rate_limiter"].update(
            min_diff=_finite_or_none(limiter.min_diff),
            max_diff=_finite_or_none(limiter.max_diff),
            inserts=counters.inserts,
            samples=counters.samples,
            deletes=counters.deletes,
            waiting_inserts=entry.waiting[0],
            waiting_samples=entry.waiting[1],
        )
        return {
            "name": name,
            **body,
            "item_signature": await self.store.template(name),
            "size": counters.size,
            "num_inserts": counters.inserts,
            "num_samples": counters.samples,
            "num_deletes": counters.deletes,
        }

    # -- insert --------------------------------------------------------------------------------
    async def insert(self, name: str, body: Any) -> list[int]:
        entry = await self._entry(name)
        config, limiter = entry.config, entry.limiter
        require_map(body, "insert")
        timeout_ms = timeout_ms_of(body)
        signature = entry.signature or await self.store.signature(name)
        if "columns" in body:
            columns, priorities = columns_form(body)
        elif "items" in body:
            columns, priorities = items_form(body["items"], signature)
        else:
            raise InvalidRequest('an insert body needs "items" (or the columnar "columns")')
        n = len(priorities)
        if n > config.max_size:
            raise InvalidRequest(
                f"{n} items can never be stored at once in a table of max_size {config.max_size}"
            )
        template = None
        if signature is not None:
            check_columns(columns, signature)
        else:
            template = nest_from_paths(
                {
                    path: {"dtype": c.dtype.str, "shape": list(c.shape[1:])}
                    for path, c in columns.items()
                }
            )

        def never(inserts: int, samples: int) -> str | None:
            if limiter.insert_never_admitted(n, inserts, samples):
                return (
                    f"the rate limiter can never admit {n} items at once (max_diff"
                    f" {limiter.max_diff}, samples_per_insert {limiter.samples_per_insert}):"
                    " send smaller batches"
                )
            return None

        keys = await self._long_poll(
            name,
            entry,
            0,
            lambda: self.store.try_insert(name, columns, priorities, template),
            never,
            timeout_ms,
        )
        entry.inserted.inc(n)
        return keys

    # -- sample --------------------------------------------------------------------------------
    async def sample(self, name: str, body: Any) -> dict[str, Any]:
        entry = await self._entry(name)
        config, limiter = entry.config, entry.limiter
        require_map(body, "sample")
        timeout_ms = timeout_ms_of(body)
        n = body.get("batch_size")
        if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= MAX_BATCH_SIZE:
            raise InvalidRequest(f"batch_size must be an int in [1, {MAX_BATCH_SIZE}], got {n!r}")
        mts = config.max_times_sampled
        if mts and n > config.max_size * mts:
            raise InvalidRequest(
                f"batch_size {n} can never be sampled: at most max_size * max_times_sampled ="
                f" {config.max_size * mts} draws can be available"
            )
        signature = entry.signature or await self.store.signature(name)
        if signature is not None and self.max_answer_bytes is not None:
            item_bytes = sum(
                math.prod(shape) * dtype.itemsize for dtype, shape in signature.values()
            )
            if n * item_bytes > self.max_answer_bytes:
                raise InvalidRequest(
                    f"batch_size {n} of {item_bytes}-byte items is over the body limit of"
                    f" {self.max_answer_bytes} bytes (MAX_BODY_BYTES): sample smaller batches"
                )
        if limiter.sample_never_admitted(n):
            raise InvalidRequest(
                f"the rate limiter can never admit {n} samples at once (min_diff"
                f" {limiter.min_diff}, max_diff {limiter.max_diff}): sample smaller batches"
            )
        result = await self._long_poll(
            name, entry, 1, lambda: self.store.try_sample(name, n), None, timeout_ms
        )
        entry.sampled.inc(n)
        return {  # 1-d arrays: the routes answer them as lists of numbers
            "keys": result.keys,
            "probabilities": result.probabilities,
            "priorities": result.priorities,
            "times_sampled": result.times_sampled,
            "table_size": int(result.table_size),
            "data": nest_from_paths(result.columns),
        }

    async def _long_poll(
        self,
        name: str,
        entry: _Entry,
        which: int,
        attempt: Callable[[], Awaitable[T | None]],
        never: Callable[[int, int], str | None] | None,
        timeout_ms: int,
    ) -> T:
        result = await attempt()
        if result is not None:
            return result
        if never is not None:
            counters = await self.store.counters(name)
            reason = never(counters.inserts, counters.samples)
            if reason is not None:
                raise InvalidRequest(reason)
        op = ("insert", "sample")[which]
        self.metrics.waits.labels(name, op).inc()
        timeout_ms = min(timeout_ms, self.max_wait_ms)
        deadline = time.monotonic() + timeout_ms / 1000
        while True:
            watch = self.store.watch(name)  # before the try, so no change slips in between
            result = await attempt()
            if result is not None:
                return result
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.metrics.timeouts.labels(name, op).inc()
                raise RateLimited(
                    f"the rate limiter did not admit this {op} within {timeout_ms} ms; nothing was"
                    f" {'stored' if op == 'insert' else 'sampled'}. Retry later.",
                    retry_after=1.0,
                )
            if self._stopping.is_set():
                raise ServiceUnavailable("the replay service is shutting down; retry elsewhere")
            if entry.waiting[which] >= self.max_waiters:
                raise RateLimited(
                    f"{self.max_waiters} {op} requests are already waiting for the rate limiter of"
                    f" table {name!r} (MAX_WAITERS); nothing was"
                    f" {'stored' if op == 'insert' else 'sampled'}. Retry later.",
                    retry_after=1.0,
                )
            entry.waiting[which] += 1
            changed = asyncio.ensure_future(watch.wait(remaining))
            stopping = asyncio.ensure_future(self._stopping.wait())
            try:
                await asyncio.wait((changed, stopping), return_when=asyncio.FIRST_COMPLETED)
            finally:
                entry.waiting[which] -= 1
                for task in (changed, stopping):
                    task.cancel()

    # -- priorities, reset ---------------------------------------------------------------------
    async def mutate(self, name: str, body: Any) -> dict[str, int]:
        await self._entry(name)
        require_map(body, "priorities")
        keys = keys_of(body.get("keys", []), "keys")
        priorities = priorities_of(body.get("priorities", []))
        if len(keys) != len(priorities):
            raise InvalidRequest(f"{len(keys)} keys but {len(priorities)} priorities")
        deletes = keys_of(body.get("deletes", []), "deletes")
        updated, deleted = await self.store.mutate_priorities(name, keys, priorities, deletes)
        return {"updated": updated, "deleted": deleted}

    async def reset(self, name: str) -> None:
        await self._entry(name)
        await self.store.reset(name)


def _finite_or_none(x: float) -> float | None:
    return x if math.isfinite(x) else None
