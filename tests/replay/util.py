"""Small helpers shared by the replay tests."""

from __future__ import annotations

from typing import Any

import numpy as np

from shared.clients import ReplayClient


def table(**overrides: Any) -> dict[str, Any]:
    """A table config: uniform sampler, fifo remover, min_size 1, unless overridden."""
    return {
        "sampler": {"kind": "uniform"},
        "remover": {"kind": "fifo"},
        "max_size": 1000,
        "max_times_sampled": 0,
        "rate_limiter": {"kind": "min_size", "min_size_to_sample": 1},
        **overrides,
    }


def items(xs: Any) -> dict[str, np.ndarray]:
    """A batch of items whose leaf ``x`` (int64) identifies them."""
    return {"x": np.asarray(xs, dtype=np.int64)}


async def state(client: ReplayClient, name: str) -> tuple[int, int, int, int]:
    info = await client.info(name)
    return info["size"], info["num_inserts"], info["num_samples"], info["num_deletes"]


async def live(client: ReplayClient, name: str, keys: list[int]) -> list[bool]:
    """Which keys are still in the table (probes with priority updates of the same value)."""
    out = []
    for key in keys:
        result = await client.update_priorities(name, keys=[key], priorities=[1.0])
        out.append(result["updated"] == 1)
    return out
