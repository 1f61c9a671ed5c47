"""Redis storage: a table's whole state lives in Redis and every operation is one Lua script.

So several replay processes can serve the same tables: each ``try_*`` (rate limiter check
included) is atomic in Redis, and a restarted process finds every acknowledged item and counter.

Layout (``lua/common.lua`` has the details), with no per-item keys; every column is cut into
strings ("segments", 256 KiB or more) allocated once at their final size:
- ``<prefix>:{t:<name>}:h``: a hash with the config, counters and the signature;
- ``...:d:<s>``: per slot a record: tag (insert sequence + 1), priority, times sampled, then the
  leaves' raw bytes in signature order; a record never straddles two segments;
- ``...:free:<s>``: the free slots; the sampler's / remover's structures: a 16-ary tree of live
  counts (uniform: rejection sampling over the slots, the counts when unlucky) or of counts and
  sums of p^a (prioritized), a doubly-linked list (fifo, lifo), a binary heap with a position
  index (max_heap, min_heap).

Python packs a batch into one blob of records (a structured numpy array) and reads sampled records
back the same way, as per-leaf views; no Python loop runs per item. Every mutating script
PUBLISHes on ``<prefix>:chan:<name>``; one pattern subscription per process wakes the watchers.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from services.replay.config import TableConfig
from services.replay.storage.base import (
    Columns,
    Counters,
    EventWatch,
    SampleResult,
    Signature,
    check_columns,
)
from shared.errors import Conflict, InvalidRequest, NotFound

_LUA = Path(__file__).with_name("lua")
_SCRIPTS = ("create", "insert", "sample", "mutate", "reset")
# (packed, like the scripts' struct formats) a draw as sample.lua packs it; a record's meta fields,
# before its leaves (lua/common.lua); a priority update and a delete for mutate.lua
_DRAW = np.dtype([("seq", "<i8"), ("slot", "<i4"), ("prob", "<f8"), ("prio", "<f8"), ("ts", "<u4")])
_META = [("tag", "<i8"), ("prio", "<f8"), ("ts", "<u4")]
_META_BYTES = 20
_UPDATE = np.dtype([("slot", "<i4"), ("tag", "<i8"), ("prio", "<f8")])
_DELETE = np.dtype([("slot", "<i4"), ("tag", "<i8")])
_RECONNECT_S = 0.5


@dataclass(frozen=True)
class _Layout:
    """A signature as the scripts see it: a canonical string and the packed record dtype."""

    sig: str
    signature: Signature
    paths: list[tuple[str | int, ...]]
    dtype: np.dtype

    @classmethod
    def of(cls, signature: Signature) -> _Layout:
        paths = sorted(signature)  # == shared.nest.flatten order
        specs = [(np.dtype(signature[p][0]), tuple(signature[p][1])) for p in paths]
        sig = json.dumps(
            [[list(p), dt.str, list(shape)] for p, (dt, shape) in zip(paths, specs, strict=True)],
            separators=(",", ":"),
        )
        leaves = [(f"f{i}", dt, shape) for i, (dt, shape) in enumerate(specs)]
        dtype = np.dtype(_META + leaves)
        return cls(sig, dict(zip(paths, specs, strict=True)), paths, dtype)

    @classmethod
    def parse(cls, sig: str) -> _Layout:
        return cls.of({tuple(p): (np.dtype(d), tuple(s)) for p, d, s in json.loads(sig)})


@dataclass
class _Table:
    """What this process caches about a table: the config never changes; the layout may (reset)."""

    config: TableConfig
    slot_bits: int
    siggen: int
    layout: _Layout | None
    next_seq: int  # a guess: the insert sequence moves on with every process's inserts


class RedisStore:
    """The ``TableStore`` over one Redis; any number of processes may share it."""

    def __init__(self, redis_url: str, *, prefix: str = "rlfleet", seed: int | None = None) -> None:
        self._url = redis_url
        self._prefix = prefix
        self._channel = f"{prefix}:chan:"
        self._tables_key = f"{prefix}:tables"
        self._redis: aioredis.Redis | None = None
        self._pubsub: Any = None
        self._listener: asyncio.Task[None] | None = None
        self._scripts: dict[str, Any] = {}
        self._tables: dict[str, _Table] = {}
        self._events: dict[str, asyncio.Event] = {}
        self._rng = random.Random(seed)  # seeds each script's math.random

    # -- lifecycle ----------------------------------------------------------------------------
    async def open(self) -> None:
        self._redis = aioredis.from_url(self._url)
        common = (_LUA / "common.lua").read_text()
        for name in _SCRIPTS:
            script = self._redis.register_script(common + (_LUA / f"{name}.lua").read_text())
            await self._redis.script_load(script.script)
            self._scripts[name] = script
        self._pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
        await self._pubsub.psubscribe(self._channel + "*")
        self._pubsub.connection.register_connect_callback(self._on_reconnect)
        self._listener = asyncio.create_task(self._listen(), name="rlfleet-redis-listener")

    async def close(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
            self._listener = None
        if self._pubsub is not None:
            await self._pubsub.aclose()
            self._pubsub = None
        if self._redis is not None:
            await self._redis.aclose()
            self._redis = None
        self._wake_all()

    async def ping(self) -> bool:
        try:
            return bool(await self._r.ping())
        except (RedisError, OSError):
            return False

    @property
    def _r(self) -> aioredis.Redis:
        if self._redis is None:
            raise RuntimeError("RedisStore is not open; call open() first")
        return self._redis

    # -- change notification ------------------------------------------------------------------
    async def _listen(self) -> None:
        skip = len(self._channel)
        while True:
            try:
                async for message in self._pubsub.listen():
                    if message["type"] == "pmessage":
                        self._notify(message["channel"][skip:].decode())
            except (RedisConnectionError, RedisTimeoutError, OSError):
                self._wake_all()  # messages may have been lost; waiters re-check
                await asyncio.sleep(_RECONNECT_S)

    async def _on_reconnect(self, connection: Any) -> None:
        self._wake_all()

    def _notify(self, name: str) -> None:
        event = self._events.pop(name, None)
        if event is not None:
            event.set()

    def _wake_all(self) -> None:
        events, self._events = self._events, {}
        for event in events.values():
            event.set()

    def watch(self, name: str) -> EventWatch:
        event = self._events.get(name)
        if event is None:
            event = self._events[name] = asyncio.Event()
        return EventWatch(event)

    # -- tables -------------------------------------------------------------------------------
    def _base(self, name: str) -> str:
        return f"{self._prefix}:{{t:{name}}}"

    async def _run(self, script: str, name: str, *args: Any) -> Any:
        return await self._scripts[script](keys=[self._base(name)], args=args, client=self._r)

    async def create_table(self, name: str, config: TableConfig) -> bool:
        lim = config.limiter
        leaves = config.signature_leaves()
        layout = _Layout.of(leaves) if leaves is not None else None
        state: dict[str, Any] = {
            "max_size": config.max_size,
            "max_ts": config.max_times_sampled,
            "skind": config.sampler.kind,
            "sexp": repr(float(config.sampler.priority_exponent or 0.0)),
            "rkind": config.remover.kind,
            "rexp": repr(float(config.remover.priority_exponent or 0.0)),
            "spi": repr(lim.samples_per_insert),
            "min_size": lim.min_size_to_sample,
            "min_diff": repr(lim.min_diff),
            "max_diff": repr(lim.max_diff),
            "fixed_sig": int(layout is not None),
            "sig": layout.sig if layout else "",
            "template": json.dumps(config.signature) if layout else "",
            "rec_size": layout.dtype.itemsize - _META_BYTES if layout else 0,
            "siggen": int(layout is not None),
        }
        flat = [x for kv in state.items() for x in kv]
        reply = await self._run(
            "create", name, self._tables_key, name, config.model_dump_json(), *flat
        )
        if reply[0] == 1:
            return True
        existing = TableConfig.model_validate_json(reply[1])
        if existing != config:
            raise Conflict(
                f"table {name!r} exists with a different config: {existing.model_dump_json()}"
            )
        return False

    async def _table(self, name: str) -> _Table:
        table = self._tables.get(name)
        if table is None:
            config, sig, siggen, next_seq = await self._r.hmget(
                self._base(name) + ":h", ["config", "sig", "siggen", "next_seq"]
            )
            if config is None:
                raise _not_found(name)
            cfg = TableConfig.model_validate_json(config)
            table = _Table(
                config=cfg,
                slot_bits=max(1, (cfg.max_size - 1).bit_length()),
                siggen=int(siggen),
                layout=_Layout.parse(sig.decode()) if sig else None,
                next_seq=int(float(next_seq)),
            )
            self._tables[name] = table
        return table

    async def get_config(self, name: str) -> TableConfig:
        return (await self._table(name)).config

    async def table_names(self) -> list[str]:
        return sorted(m.decode() for m in await self._r.smembers(self._tables_key))

    async def signature(self, name: str) -> Signature | None:
        """The last signature this process saw (the insert script re-checks it atomically)."""
        layout = (await self._table(name)).layout
        return layout.signature if layout else None

    async def template(self, name: str) -> Any:
        await self._table(name)
        template = await self._r.hget(self._base(name) + ":h", "template")
        return json.loads(template) if template else None

    async def counters(self, name: str) -> Counters:
        await self._table(name)
        values = await self._r.hmget(
            self._base(name) + ":h", ["size", "inserts", "samples", "deletes"]
        )
        size, inserts, samples, deletes = (int(float(v)) for v in values)
        return Counters(size=size, inserts=inserts, samples=samples, deletes=deletes)

    # -- items --------------------------------------------------------------------------------
    async def try_insert(
        self, name: str, columns: Columns, priorities: np.ndarray, template: Any
    ) -> list[int] | None:
        table = await self._table(name)
        layout = table.layout
        if layout is None or not _matches(columns, layout.signature):
            layout = _Layout.of({p: (c.dtype, c.shape[1:]) for p, c in columns.items()})
        priorities = np.ascontiguousarray(priorities, dtype="<f8")
        n = len(priorities)
        if n == 0:
            return []
        records = np.empty(n, layout.dtype)
        guess = table.next_seq
        records["tag"] = np.arange(guess + 1, guess + n + 1)
        records["prio"], records["ts"] = priorities, 0
        for i, path in enumerate(layout.paths):
            records[f"f{i}"] = columns[path]
        reply = await self._run(
            "insert",
            name,
            layout.sig,
            json.dumps(template),
            layout.dtype.itemsize - _META_BYTES,
            n,
            records.tobytes(),
            guess,
            self._rng.getrandbits(31),
            self._channel + name,
        )
        status = reply[0]
        if status == -1:
            self._tables.pop(name, None)
            raise _not_found(name)
        if status == -2:
            table.layout = _Layout.parse(reply[1].decode())
            check_columns(columns, table.layout.signature)
            raise InvalidRequest("the items do not match the table's signature")
        if status == 0:
            return None
        self._notify(name)
        table.layout, table.siggen, table.next_seq = layout, int(reply[3]), reply[1] + n
        slots = np.frombuffer(reply[2], "<i4").astype(np.int64)
        seq = np.arange(reply[1], reply[1] + n, dtype=np.int64)
        return ((seq << table.slot_bits) | slots).tolist()

    async def try_sample(self, name: str, batch_size: int) -> SampleResult | None:
        table = await self._table(name)
        reply = await self._run(
            "sample",
            name,
            batch_size,
            self._rng.getrandbits(31),
            table.siggen,
            self._channel + name,
        )
        if reply[0] == -1:
            raise _not_found(name)
        if reply[0] == 0:
            return None
        self._notify(name)
        status, size, siggen, sig, *rest = reply
        if sig:
            table.layout, table.siggen = _Layout.parse(sig.decode()), int(siggen)
        layout = table.layout
        assert layout is not None  # a table with items has a signature
        data = rest[-1]
        records = np.frombuffer(data if isinstance(data, bytes) else b"".join(data), layout.dtype)
        if status == 1:  # draws in sequence, each with its own meta fields
            draws = np.frombuffer(rest[0], _DRAW)
            keys = (draws["seq"] << table.slot_bits) | draws["slot"]
            probabilities, priorities = draws["prob"].copy(), draws["prio"].copy()
            times_sampled = draws["ts"].astype(np.int64)
        else:  # i.i.d. draws: the records' meta fields are from before the batch
            slots = np.frombuffer(rest[0], "<i4").astype(np.int64)
            keys = ((records["tag"] - 1) << table.slot_bits) | slots
            probabilities = np.frombuffer(rest[1], "<f8").copy() if rest[1] else None
            if probabilities is None:
                probabilities = np.full(batch_size, 1.0 / size)
            priorities = records["prio"].copy()
            times_sampled = np.minimum(records["ts"] + _draw_counts(slots), 2**32 - 1)
        return SampleResult(
            keys=keys,
            probabilities=probabilities,
            priorities=priorities,
            times_sampled=times_sampled,
            table_size=int(size),
            columns={path: records[f"f{i}"] for i, path in enumerate(layout.paths)},
        )

    async def mutate_priorities(
        self, name: str, keys: np.ndarray, priorities: np.ndarray, deletes: np.ndarray
    ) -> tuple[int, int]:
        table = await self._table(name)
        keys = np.asarray(keys, np.int64)
        priorities = np.asarray(priorities, np.float64)
        if len(keys):  # a repeated key: the last value wins
            _, last = np.unique(keys[::-1], return_index=True)
            last = len(keys) - 1 - last
            keys, priorities = keys[last], priorities[last]
        ups = self._slots_tags(table, keys, _UPDATE)
        ups["prio"] = priorities[self._valid(table, keys)]
        dels = self._slots_tags(table, np.unique(np.asarray(deletes, np.int64)), _DELETE)
        if not len(ups) and not len(dels):
            return 0, 0
        updated, deleted = await self._run(
            "mutate", name, ups.tobytes(), dels.tobytes(), self._channel + name
        )
        if updated == -1:
            raise _not_found(name)
        if deleted:
            self._notify(name)
        return int(updated), int(deleted)

    @staticmethod
    def _valid(table: _Table, keys: np.ndarray) -> np.ndarray:
        return (keys >= 0) & ((keys & ((1 << table.slot_bits) - 1)) < table.config.max_size)

    def _slots_tags(self, table: _Table, keys: np.ndarray, dtype: np.dtype) -> np.ndarray:
        keys = keys[self._valid(table, keys)]
        out = np.zeros(len(keys), dtype)
        out["slot"] = keys & ((1 << table.slot_bits) - 1)
        out["tag"] = (keys >> table.slot_bits) + 1
        return out

    async def reset(self, name: str) -> None:
        await self._table(name)
        if (await self._run("reset", name, self._channel + name))[0] == -1:
            raise _not_found(name)
        self._notify(name)
        self._tables.pop(name, None)  # reload the signature (and its generation) lazily


def _not_found(name: str) -> NotFound:
    return NotFound(f"no table named {name!r}; create it with PUT /tables/{name}")


def _draw_counts(slots: np.ndarray) -> np.ndarray:
    """For each draw, 1 + the number of earlier draws of the same slot in the batch."""
    n = len(slots)
    order = np.argsort(slots, kind="stable")
    ordered = slots[order]
    starts = np.r_[True, ordered[1:] != ordered[:-1]]
    first = np.maximum.accumulate(np.where(starts, np.arange(n), 0))
    counts = np.empty(n, np.int64)
    counts[order] = np.arange(n) - first + 1
    return counts


def _matches(columns: Columns, signature: Signature) -> bool:
    if columns.keys() != signature.keys():
        return False
    return all(
        c.dtype == signature[p][0] and c.shape[1:] == signature[p][1] for p, c in columns.items()
    )
