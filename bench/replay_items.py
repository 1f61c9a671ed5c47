"""The items and tables the replay benchmarks load: CartPole transitions and 64 KB frames."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Payload:
    """One kind of item, as the batch of columns every request of the benchmark carries."""

    key: str
    label: str
    columns: dict[str, np.ndarray]  # leaf -> (batch, *shape)
    insert_ring: int  # max_size of the insert tables (FIFO removal keeps them bounded)
    prefill: int  # items in the sample tables before sampling

    @property
    def batch(self) -> int:
        return len(next(iter(self.columns.values())))

    @property
    def item_bytes(self) -> int:
        return sum(column[0].nbytes for column in self.columns.values())

    def item(self, i: int) -> bytes:
        return b"".join(column[i].tobytes() for column in self.columns.values())

    def table(self, direction: str) -> str:
        return f"bench_{direction}_{self.key}"


def cartpole(batch: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    return {
        "observation": rng.standard_normal((batch, 4), dtype=np.float32),
        "action": rng.integers(0, 2, batch, dtype=np.int32),
        "reward": np.ones(batch, dtype=np.float32),
        "discount": np.full(batch, 0.99, dtype=np.float32),
        "next_observation": rng.standard_normal((batch, 4), dtype=np.float32),
    }


def table_config(max_size: int, min_size_to_sample: int = 1) -> dict[str, Any]:
    return {
        "sampler": {"kind": "uniform"},
        "remover": {"kind": "fifo"},
        "max_size": max_size,
        "max_times_sampled": 0,
        "rate_limiter": {"kind": "min_size", "min_size_to_sample": min_size_to_sample},
    }


def payloads() -> list[Payload]:
    """CartPole transitions in batches of 256, and 64 KB items (one u1[65536] leaf) in batches of 16."""
    rng = np.random.default_rng(0)
    return [
        Payload(
            "cartpole", "CartPole ×256", cartpole(256, rng), insert_ring=100_000, prefill=20_000
        ),
        Payload(
            "64kb",
            "64 KB ×16",
            {"frame": rng.integers(0, 256, (16, 65536), dtype=np.uint8)},
            insert_ring=512,
            prefill=512,
        ),
    ]
