"""The backend-independent table layer: validation, long-polling, the shape of every answer.

Routes hand it decoded bodies; it checks them against the contract and the table's signature,
refuses at once what can never be admitted, and otherwise waits for the rate limiter::

    watch = store.watch(name)             # before the try: no change can slip in between
    result = await store.try_insert(...)  # atomic; None = not admitted now
    await watch.wait(remaining)           # woken by the sample/insert/delete that changes things

A request that times out is answered 429 and leaves nothing stored or counted.
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any, TypeVar

import numpy as np

from services.replay.config import RateLimiterParams, TableConfig
from services.replay.metrics import ReplayMetrics
from services.replay.storage.base import Columns, Signature, TableStore, check_columns
from shared.errors import InvalidRequest, RateLimited
from shared.nest import flatten, path_str

DEFAULT_TIMEOUT_MS = 5_000
MAX_TIMEOUT_MS = 600_000
T = TypeVar("T")


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

    def __init__(self, store: TableStore, metrics: ReplayMetrics) -> None:
        self.store = store
        self.metrics = metrics
        self._entries: dict[str, _Entry] = {}

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
        _require_map(body, "insert")
        timeout_ms = _timeout_ms(body)
        signature = entry.signature or await self.store.signature(name)
        if "columns" in body:
            columns, priorities = _columns_form(body)
        elif "items" in body:
            columns, priorities = _items_form(body["items"], signature)
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
        _require_map(body, "sample")
        timeout_ms = _timeout_ms(body)
        n = body.get("batch_size")
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise InvalidRequest(f"batch_size must be an int >= 1, got {n!r}")
        mts = config.max_times_sampled
        if mts and n > config.max_size * mts:
            raise InvalidRequest(
                f"batch_size {n} can never be sampled: at most max_size * max_times_sampled ="
                f" {config.max_size * mts} draws can be available"
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
        return {
            "keys": result.keys.tolist(),
            "probabilities": result.probabilities.tolist(),
            "priorities": result.priorities.tolist(),
            "times_sampled": result.times_sampled.tolist(),
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
            entry.waiting[which] += 1
            try:
                await watch.wait(remaining)
            finally:
                entry.waiting[which] -= 1

    # -- priorities, reset ---------------------------------------------------------------------
    async def mutate(self, name: str, body: Any) -> dict[str, int]:
        await self._entry(name)
        _require_map(body, "priorities")
        keys = _keys(body.get("keys", []), "keys")
        priorities = _priorities(body.get("priorities", []))
        if len(keys) != len(priorities):
            raise InvalidRequest(f"{len(keys)} keys but {len(priorities)} priorities")
        deletes = _keys(body.get("deletes", []), "deletes")
        updated, deleted = await self.store.mutate_priorities(name, keys, priorities, deletes)
        return {"updated": updated, "deleted": deleted}

    async def reset(self, name: str) -> None:
        await self._entry(name)
        await self.store.reset(name)


# -- request parsing ---------------------------------------------------------------------------
def _require_map(body: Any, what: str) -> None:
    if not isinstance(body, dict):
        raise InvalidRequest(f"the {what} body must be a map, got {type(body).__name__}")


def _timeout_ms(body: dict[str, Any]) -> int:
    timeout_ms = body.get("timeout_ms", DEFAULT_TIMEOUT_MS)
    if not isinstance(timeout_ms, int | float) or isinstance(timeout_ms, bool):
        raise InvalidRequest(f"timeout_ms must be a number, got {timeout_ms!r}")
    if not (0 <= timeout_ms <= MAX_TIMEOUT_MS):
        raise InvalidRequest(f"timeout_ms must be between 0 and {MAX_TIMEOUT_MS}")
    return int(timeout_ms)


def _check_paths(pairs: list[tuple[tuple[Any, ...], Any]], what: str) -> None:
    if not pairs:
        raise InvalidRequest(f"{what} has no leaves")
    for path, _ in pairs:
        if not all(isinstance(p, str | int) for p in path):
            raise InvalidRequest(f"{what}: map keys must be strings")


def _flatten(nest: Any, what: str) -> list[tuple[tuple[Any, ...], Any]]:
    try:
        pairs = flatten(nest)
    except TypeError as e:  # sorting map keys of mixed types
        raise InvalidRequest(f"{what}: map keys must be strings") from e
    _check_paths(pairs, what)
    return pairs


def _columns_form(body: dict[str, Any]) -> tuple[Columns, np.ndarray]:
    columns: Columns = {}
    n = None
    for path, leaf in _flatten(body["columns"], "columns"):
        if not isinstance(leaf, np.ndarray) or leaf.ndim == 0:
            raise InvalidRequest(
                f"columns leaf {path_str(path)} must be an array with a leading batch axis"
            )
        if n is None:
            n = len(leaf)
        elif len(leaf) != n:
            raise InvalidRequest(
                f"columns leaf {path_str(path)} has {len(leaf)} rows, the first leaf has {n}"
            )
        columns[path] = leaf
    assert n is not None
    if n == 0:
        raise InvalidRequest("an insert needs at least one item")
    priorities = _priorities(body.get("priorities", 1.0), n)
    return columns, priorities


def _items_form(items: Any, signature: Any) -> tuple[Columns, np.ndarray]:
    if not isinstance(items, list) or not items:
        raise InvalidRequest('"items" must be a non-empty list of {"data": nest, "priority": p}')
    rows: list[list[np.ndarray]] = []
    paths = None
    priorities = []
    for i, item in enumerate(items):
        if not isinstance(item, dict) or "data" not in item:
            raise InvalidRequest(f'item {i} must be a map {{"data": nest, "priority": p}}')
        pairs = _flatten(item["data"], f"item {i}")
        item_paths = [path for path, _ in pairs]
        if paths is None:
            paths = item_paths
        elif item_paths != paths:
            raise InvalidRequest(f"item {i} has leaves {item_paths}, item 0 has {paths}")
        rows.append([_leaf(leaf, path, signature) for path, leaf in pairs])
        priorities.append(item.get("priority", 1.0))
    assert paths is not None
    columns: Columns = {}
    for j, path in enumerate(paths):
        leaves = [row[j] for row in rows]
        first = leaves[0]
        if any(leaf.dtype != first.dtype or leaf.shape != first.shape for leaf in leaves):
            raise InvalidRequest(f"leaf {path_str(path)} differs in dtype or shape across items")
        columns[path] = np.stack(leaves)
    return columns, _priorities(priorities, len(items))


_PY_KINDS = {bool: "b", int: "iu", float: "f"}


def _leaf(value: Any, path: tuple[Any, ...], signature: Any) -> np.ndarray:
    """An item leaf as an array; a plain number takes the signature's dtype when its kind fits."""
    if isinstance(value, np.ndarray):
        return value
    kinds = _PY_KINDS.get(type(value))
    if kinds is None:
        raise InvalidRequest(
            f"leaf {path_str(path)} is a {type(value).__name__}; leaves must be arrays or numbers"
        )
    spec = signature.get(tuple(path)) if signature is not None else None
    if spec is not None and spec[0].kind in kinds and spec[1] == ():
        try:
            return np.array(value, dtype=spec[0])
        except OverflowError as e:
            raise InvalidRequest(f"leaf {path_str(path)}: {value} does not fit {spec[0]}") from e
    return np.array(value)


def _priorities(value: Any, n: int | None = None) -> np.ndarray:
    if isinstance(value, int | float) and not isinstance(value, bool) and n is not None:
        value = [value] * n
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in "iuf" or value.ndim != 1:
            raise InvalidRequest("priorities must be a 1-d numeric array")
        priorities = value.astype(np.float64)
    elif isinstance(value, list) and all(
        isinstance(p, int | float) and not isinstance(p, bool) for p in value
    ):
        priorities = np.array(value, dtype=np.float64) if value else np.empty(0)
    else:
        raise InvalidRequest("priorities must be a list of numbers or a 1-d array")
    if n is not None and len(priorities) != n:
        raise InvalidRequest(f"{len(priorities)} priorities for {n} items")
    if not np.isfinite(priorities).all() or (priorities < 0).any():
        raise InvalidRequest("priorities must be finite and >= 0 (no NaN, inf or negatives)")
    return priorities


def _keys(value: Any, what: str) -> np.ndarray:
    """Keys as int64; anything that cannot be a key (negative, >= 2**63) becomes -1."""
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in "iu" or value.ndim != 1:
            raise InvalidRequest(f"{what} must be a 1-d integer array")
        value = value.tolist()
    if not isinstance(value, list) or not all(
        isinstance(k, int) and not isinstance(k, bool) for k in value
    ):
        raise InvalidRequest(f"{what} must be a list of integer keys")
    return np.array([k if 0 <= k < 2**63 else -1 for k in value], dtype=np.int64)


def nest_from_paths(columns: dict[tuple[Any, ...], Any]) -> Any:
    """Rebuilds a nest from ``{path: leaf}`` in flatten order: str keys are maps, ints lists."""
    if () in columns:
        return columns[()]
    root: Any = {} if isinstance(next(iter(columns))[0], str) else []
    for path, leaf in columns.items():
        node = root
        for key, child_key in pairwise(path):
            if isinstance(node, dict):
                child = node.get(key)
                if child is None:
                    child = node[key] = {} if isinstance(child_key, str) else []
            elif key < len(node):
                child = node[key]
            else:
                child = {} if isinstance(child_key, str) else []
                node.append(child)
            node = child
        if isinstance(node, dict):
            node[path[-1]] = leaf
        else:
            node.append(leaf)
    return root


def _finite_or_none(x: float) -> float | None:
    return x if math.isfinite(x) else None
