"""The storage interface behind replay tables: one Protocol, two backends (memory, redis).

A store owns every table's state: config, items, priorities, times sampled, counters, and the
structures that samplers and removers need. Each ``try_*`` call is atomic (in Redis: one Lua
script) and never blocks: it either applies the whole request or returns ``None`` because the rate
limiter does not admit it *now*. Waiting, timeouts and 429s live above, in ``services.replay.table``,
which uses ``watch`` to sleep until something changes in the table (an insert, sample, delete or
reset by this process or, with Redis, by any other process serving the same tables).

Data layout. A table's items all have one signature: the config's, or, if the config has none, the
one the first insert fixes (until ``reset``). Items travel as *columns*: ``{path: array}`` with a
leading batch axis, one entry per leaf of the signature (``shared.nest.flatten`` order).

Keys. A key is a non-negative int below 2**63 that encodes the slot the item lives in:
``key = (insert_sequence << slot_bits) | slot`` with ``slot_bits = max(1, (max_size - 1).bit_length())``.
A key is valid while ``keys[slot] == key``. So there is no per-item dict, and a key is never reused.

Counters and the rate limiter follow CONTRACT.md (Reverb): ``inserts``, ``samples``, ``deletes``,
``diff = inserts * samples_per_insert - samples``. ``deletes`` counts every removal (by the remover
when full, by ``max_times_sampled``, by explicit deletes). ``reset`` empties the table and zeroes
the counters.

Sampling a batch of n is n draws in sequence from the changing table (an item that reaches
``max_times_sampled`` is removed at once, so it cannot be drawn again in the same batch); backends
vectorize when no draw can remove anything. Per item the result carries its probability at the time
of the draw (uniform 1/size, prioritized p**a/sum, fifo/lifo/heaps 1.0), its priority, and its
times_sampled counting this draw. ``table_size`` is the size before the batch.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from services.replay.config import TableConfig
from shared.errors import InvalidRequest
from shared.nest import path_str

Columns = dict[tuple[str | int, ...], np.ndarray]  # leaf path -> (batch, *leaf_shape) array
Signature = Mapping[tuple[str | int, ...], tuple[np.dtype, tuple[int, ...]]]


def check_columns(columns: Columns, signature: Signature) -> None:
    """Raises ``InvalidRequest`` unless ``columns`` have exactly the leaves, dtypes and per-item
    shapes of ``signature``."""
    if columns.keys() != signature.keys():
        raise InvalidRequest(
            f"item leaves {sorted(map(path_str, columns))} do not match the table's signature"
            f" {sorted(map(path_str, signature))}"
        )
    for path, column in columns.items():
        dtype, shape = signature[path]
        if column.dtype != dtype or column.shape[1:] != shape:
            raise InvalidRequest(
                f"leaf {path_str(path)} is {column.dtype.str} {list(column.shape[1:])} per item;"
                f" the table's signature says {dtype.str} {list(shape)}"
            )


@dataclass(frozen=True)
class SampleResult:
    keys: np.ndarray  # (n,) int64
    probabilities: np.ndarray  # (n,) float64
    priorities: np.ndarray  # (n,) float64
    times_sampled: np.ndarray  # (n,) integers
    table_size: int
    columns: Columns  # path -> (n, *leaf_shape)


@dataclass(frozen=True)
class Counters:
    size: int
    inserts: int
    samples: int
    deletes: int


class Watch(Protocol):
    """Created *before* a try; ``wait`` returns as soon as the table changed after creation."""

    async def wait(self, timeout_s: float) -> bool:
        """True if the table changed, False on timeout."""
        ...


class EventWatch:
    """A Watch on an ``asyncio.Event`` that the store sets (and replaces) on every change."""

    def __init__(self, event: asyncio.Event) -> None:
        self._event = event

    async def wait(self, timeout_s: float) -> bool:
        try:
            async with asyncio.timeout(max(0.0, timeout_s)):
                await self._event.wait()
        except TimeoutError:
            return False
        return True


class TableStore(Protocol):
    async def open(self) -> None:
        """Connects (Redis), loads scripts, starts listeners."""
        ...

    async def close(self) -> None:
        """Stops every background task and closes connections."""
        ...

    async def ping(self) -> bool:
        """True when the store (and Redis) answers."""
        ...

    async def create_table(self, name: str, config: TableConfig) -> bool:
        """Creates ``name``; True if created, False if it existed with an equal config.

        Raises ``shared.errors.Conflict`` if it exists with a different config.
        """
        ...

    async def get_config(self, name: str) -> TableConfig:
        """Raises ``shared.errors.NotFound`` for an unknown table."""
        ...

    async def table_names(self) -> list[str]: ...

    async def signature(self, name: str) -> Signature | None:
        """The fixed signature as ``{path: (dtype, shape)}``, or None before the first insert of a
        table without a configured one."""
        ...

    async def try_insert(
        self, name: str, columns: Columns, priorities: np.ndarray, template: Any
    ) -> list[int] | None:
        """Stores the whole batch and returns its keys, or None if the limiter does not admit it now.

        ``columns`` were validated against the signature by the caller (or, for the first insert of
        an unsigned table, define it; ``template`` is the nest structure with the leaves replaced by
        ``{"dtype", "shape"}`` specs, stored so samples can be rebuilt as nests). The store checks
        them again, atomically, with ``check_columns`` (a concurrent first insert or a reset may
        have fixed another signature since) and raises ``InvalidRequest`` on a mismatch.
        """
        ...

    async def try_sample(self, name: str, batch_size: int) -> SampleResult | None:
        """Samples the whole batch, or None if the limiter does not admit it now."""
        ...

    async def mutate_priorities(
        self, name: str, keys: np.ndarray, priorities: np.ndarray, deletes: np.ndarray
    ) -> tuple[int, int]:
        """Updates priorities of known keys, then deletes; returns ``(updated, deleted)``.
        Unknown keys are ignored."""
        ...

    async def reset(self, name: str) -> None: ...

    async def counters(self, name: str) -> Counters: ...

    async def template(self, name: str) -> Any:
        """The nest template (leaves are specs) samples are rebuilt with; None before any insert."""
        ...

    def watch(self, name: str) -> Watch: ...
