"""Table configuration (the body of ``PUT /tables/{name}``) and the rate limiter's parameters.

Every rate limiter reduces to Reverb's four numbers ``(samples_per_insert, min_size_to_sample,
min_diff, max_diff)`` over the counters ``inserts``, ``samples`` and ``deletes``::

    diff = inserts * samples_per_insert - samples
    insert n  when  inserts + n - deletes <= min_size_to_sample
                or  (inserts + n) * samples_per_insert - samples <= max_diff
    sample n  when  inserts - deletes >= min_size_to_sample  and  diff - n >= min_diff

Configs that would deadlock are refused the way Reverb refuses them (ValueError -> 422).
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from shared import limits
from shared.errors import DecodeError
from shared.nest import flatten, is_spec

SelectorKind = Literal["uniform", "prioritized", "fifo", "lifo", "max_heap", "min_heap"]
INF = float("inf")


class Selector(BaseModel):
    """A sampler or remover: which item to pick."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: SelectorKind
    priority_exponent: float | None = Field(
        default=None, description="Only for `prioritized`: p_i**a / sum_j p_j**a."
    )

    @model_validator(mode="after")
    def _exponent(self) -> Selector:
        if self.kind == "prioritized":
            if self.priority_exponent is None:
                object.__setattr__(self, "priority_exponent", 1.0)
            elif not (math.isfinite(self.priority_exponent) and self.priority_exponent >= 0):
                raise ValueError("priority_exponent must be a finite number >= 0")
        elif self.priority_exponent is not None:
            raise ValueError(
                f"priority_exponent only applies to the prioritized kind, not {self.kind}"
            )
        return self


class MinSize(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    kind: Literal["min_size"]
    min_size_to_sample: int = Field(ge=1, strict=True)


class SampleToInsertRatio(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    kind: Literal["sample_to_insert_ratio"]
    samples_per_insert: float
    min_size_to_sample: int = Field(strict=True)
    error_buffer: float | tuple[float, float]

    @model_validator(mode="after")
    def _no_deadlock(self) -> SampleToInsertRatio:
        spi = self.samples_per_insert
        if not (math.isfinite(spi) and spi > 0):
            raise ValueError(f"samples_per_insert ({spi}) must be > 0")
        if self.min_size_to_sample < 1:
            raise ValueError(f"min_size_to_sample ({self.min_size_to_sample}) must be >= 1")
        min_diff, max_diff = self.bounds()
        if not (math.isfinite(min_diff) and math.isfinite(max_diff)):
            raise ValueError("error_buffer must be finite")
        if max_diff - min_diff < 2 * max(1.0, spi):
            raise ValueError(
                f"error_buffer {self.error_buffer} gives max_diff - min_diff = {max_diff - min_diff},"
                f" below 2 * max(1, samples_per_insert) = {2 * max(1.0, spi)}: inserts and samples"
                " could block each other for ever (deadlock)"
            )
        if min_diff > spi * self.min_size_to_sample:
            raise ValueError(
                f"min_diff {min_diff} is above samples_per_insert * min_size_to_sample ="
                f" {spi * self.min_size_to_sample}: nothing could be sampled once min_size_to_sample"
                " items are in (deadlock)"
            )
        return self

    def bounds(self) -> tuple[float, float]:
        if isinstance(self.error_buffer, tuple):
            return float(self.error_buffer[0]), float(self.error_buffer[1])
        offset = self.samples_per_insert * self.min_size_to_sample
        return offset - self.error_buffer, offset + self.error_buffer


class Queue(BaseModel):
    """FIFO queue of ``size`` items: every item is sampled exactly once."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    kind: Literal["queue"]
    size: int = Field(ge=1, le=2**31 - 1, strict=True)


class Stack(BaseModel):
    """LIFO stack of ``size`` items: every item is sampled exactly once."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    kind: Literal["stack"]
    size: int = Field(ge=1, le=2**31 - 1, strict=True)


RateLimiterConfig = Annotated[
    MinSize | SampleToInsertRatio | Queue | Stack, Field(discriminator="kind")
]


class RateLimiterParams(BaseModel):
    """Reverb's four numbers, derived from any rate limiter config."""

    model_config = ConfigDict(frozen=True)
    samples_per_insert: float
    min_size_to_sample: int
    min_diff: float
    max_diff: float

    def can_insert(self, n: int, inserts: int, samples: int, deletes: int) -> bool:
        return (
            inserts + n - deletes <= self.min_size_to_sample
            or (inserts + n) * self.samples_per_insert - samples <= self.max_diff
        )

    def can_sample(self, n: int, inserts: int, samples: int, deletes: int) -> bool:
        diff = inserts * self.samples_per_insert - samples
        return inserts - deletes >= self.min_size_to_sample and diff - n >= self.min_diff

    def insert_never_admitted(self, n: int, inserts: int, samples: int) -> bool:
        """True when no sequence of samples can make room for ``n`` inserts at once."""
        if n <= self.min_size_to_sample:
            return False
        diff = inserts * self.samples_per_insert - samples
        lowest_diff = min(diff, self.min_diff)  # samples never take diff below min_diff
        return lowest_diff + n * self.samples_per_insert > self.max_diff

    def sample_never_admitted(self, n: int) -> bool:
        """True when ``n`` samples at once exceed the whole error window."""
        return n > self.max_diff - self.min_diff and self.max_diff != INF


def limiter_params(limiter: Any) -> RateLimiterParams:
    if isinstance(limiter, MinSize):
        return RateLimiterParams(
            samples_per_insert=1.0,
            min_size_to_sample=limiter.min_size_to_sample,
            min_diff=-INF,
            max_diff=INF,
        )
    if isinstance(limiter, SampleToInsertRatio):
        min_diff, max_diff = limiter.bounds()
        return RateLimiterParams(
            samples_per_insert=limiter.samples_per_insert,
            min_size_to_sample=limiter.min_size_to_sample,
            min_diff=min_diff,
            max_diff=max_diff,
        )
    # queue and stack: one sample per insert, at most `size` unsampled items
    return RateLimiterParams(
        samples_per_insert=1.0, min_size_to_sample=1, min_diff=0.0, max_diff=float(limiter.size)
    )


class TableConfig(BaseModel):
    """The config of one table; see CONTRACT.md. Equal configs compare equal (idempotent PUT).

    Counts are strict ints (``1000.0`` is refused, not truncated). Validated with the context
    ``{"max_item_bytes": n}`` (the route passes the body limit), a signature whose item could
    never travel in one body is refused; without a context (a config read back from Redis) only
    the wire's own limits apply.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    sampler: Selector = Selector(kind="uniform")
    remover: Selector = Selector(kind="fifo")
    max_size: int = Field(default=1_000_000, ge=1, le=2**31 - 1, strict=True)
    max_times_sampled: int = Field(default=0, ge=0, le=2**31 - 1, strict=True)
    rate_limiter: RateLimiterConfig = MinSize(kind="min_size", min_size_to_sample=1)
    signature: dict[str, Any] | None = None

    @field_validator("signature")
    @classmethod
    def _signature(
        cls, signature: dict[str, Any] | None, info: ValidationInfo
    ) -> dict[str, Any] | None:
        if signature is None:
            return None
        max_bytes = (info.context or {}).get("max_item_bytes")
        try:
            limits.check_nest(signature, "signature")
            leaves = flatten(signature, is_leaf=is_spec)
            limits.check_leaves(len(leaves), "signature")
        except DecodeError as e:
            raise ValueError(str(e)) from e
        if not leaves:
            raise ValueError("signature has no leaves")
        item_bytes = 0
        for path, spec in leaves:
            where = "/".join(map(str, path))
            if not is_spec(spec):
                raise ValueError(f"signature leaf {where} must be {{'dtype': ..., 'shape': [...]}}")
            try:
                dtype = limits.check_dtype(spec["dtype"])
                shape = limits.check_shape(spec["shape"], dtype.itemsize, max_bytes=max_bytes)
            except DecodeError as e:
                raise ValueError(f"signature leaf {where}: {e}") from e
            item_bytes += math.prod(shape) * dtype.itemsize
        if max_bytes is not None and item_bytes > max_bytes:
            raise ValueError(
                f"signature: one item takes {item_bytes} bytes, over the body limit of {max_bytes}"
            )
        return signature

    @model_validator(mode="after")
    def _queue_stack(self) -> TableConfig:
        limiter = self.rate_limiter
        if isinstance(limiter, Queue | Stack):
            order = "fifo" if isinstance(limiter, Queue) else "lifo"
            if (
                self.sampler.kind != order
                or self.remover.kind != order
                or self.max_times_sampled != 1
                or self.max_size < limiter.size
            ):
                raise ValueError(
                    f"a {limiter.kind} rate limiter needs sampler and remover {order!r},"
                    f" max_times_sampled 1 and max_size >= size ({limiter.size})"
                )
        return self

    @property
    def limiter(self) -> RateLimiterParams:
        return limiter_params(self.rate_limiter)

    def signature_leaves(
        self,
    ) -> dict[tuple[str | int, ...], tuple[np.dtype, tuple[int, ...]]] | None:
        if self.signature is None:
            return None
        return {
            path: (limits.check_dtype(spec["dtype"]), tuple(spec["shape"]))
            for path, spec in flatten(self.signature, is_leaf=is_spec)
        }
