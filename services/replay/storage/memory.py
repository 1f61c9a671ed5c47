"""In-process, columnar storage: one preallocated numpy array per signature leaf.

A table's items live in *slots*. Per slot there is one row in every column array plus ``keys``
(int64, -1 when empty), ``priorities`` (float64) and ``times_sampled`` (int32); the samplers and
removers keep their own index structures over slots (``structures.py``). Arrays start small and
double up to ``max_size`` (each in its own mapping: memory goes back to the OS when a smaller one
is dropped, and untouched pages cost nothing). Inserting and sampling a batch are a handful of
numpy scatters and gathers, with no Python loop over items except when ``max_times_sampled`` can
remove an item in the middle of a batch.

Memory per item is the payload plus 12 bytes (key, times sampled) in the usual DQN table (uniform
or fifo/lifo selectors, one priority for all items, only the remover's evictions): the priorities
array only exists once two priorities differ, and the order ring only keeps arrays once an item
leaves from elsewhere than its ends (then freed slots are reused last-freed first).
"""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np

from services.replay.config import TableConfig
from services.replay.storage.base import Columns, Counters, EventWatch, SampleResult, Signature
from services.replay.storage.memory_table import MemoryTable
from shared.errors import Conflict, NotFound


class MemoryStore:
    """The ``TableStore`` of one process; every call is atomic because none awaits inside."""

    def __init__(self, *, seed: int | None = None) -> None:
        self._tables: dict[str, MemoryTable] = {}
        self._seeds = np.random.SeedSequence(seed)

    async def open(self) -> None:
        pass

    async def close(self) -> None:
        for table in self._tables.values():
            table.notify()

    async def ping(self) -> bool:
        return True

    def _table(self, name: str) -> MemoryTable:
        table = self._tables.get(name)
        if table is None:
            raise NotFound(f"no table named {name!r}; create it with PUT /tables/{name}")
        return table

    async def create_table(self, name: str, config: TableConfig) -> bool:
        existing = self._tables.get(name)
        if existing is not None:
            if existing.config != config:
                raise Conflict(
                    f"table {name!r} exists with a different config: {existing.config.model_dump_json()}"
                )
            return False
        rng = np.random.default_rng(self._seeds.spawn(1)[0])
        self._tables[name] = MemoryTable(config, rng)
        return True

    async def get_config(self, name: str) -> TableConfig:
        return self._table(name).config

    async def table_names(self) -> list[str]:
        return list(self._tables)

    async def signature(self, name: str) -> Signature | None:
        return self._table(name).signature

    async def template(self, name: str) -> Any:
        return self._table(name).template

    async def try_insert(
        self, name: str, columns: Columns, priorities: np.ndarray, template: Any
    ) -> list[int] | None:
        return self._table(name).insert(columns, priorities, template)

    async def try_sample(self, name: str, batch_size: int) -> SampleResult | None:
        return self._table(name).sample(batch_size)

    async def mutate_priorities(
        self, name: str, keys: np.ndarray, priorities: np.ndarray, deletes: np.ndarray
    ) -> tuple[int, int]:
        return self._table(name).mutate(keys, priorities, deletes)

    async def reset(self, name: str) -> None:
        table = self._table(name)
        table.reset()
        table.notify()

    async def counters(self, name: str) -> Counters:
        t = self._table(name)
        return Counters(size=t.size, inserts=t.inserts, samples=t.samples, deletes=t.deletes)

    def watch(self, name: str) -> EventWatch:
        table = self._table(name)
        if table.event is None:
            table.event = asyncio.Event()
        return EventWatch(table.event)
