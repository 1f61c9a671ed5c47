"""Checkpoints of the learner: the training state, the parameter version and the counters.

A checkpoint is one file ``ckpt-<step>.msgpack`` in rlfleet's own codec (no pickle)::

    {"format": 1, "agent": "dqn", "env_id": ..., "agent_config": {...},
     "step": int, "param_version": int, "saved_at": float,
     "training_state": {"leaves": [array, ...], "prng_leaves": [index, ...]},
     "counters": {...}}

The training state (params, target params, optimizer state, step, rng) is a pytree: it is stored
as its ``jax.tree_util`` leaves and restored into the treedef of a freshly initialized state, so
optax's state classes never need to be serialized. Typed PRNG keys are stored as their key data.

Writes are atomic (temp file, fsync, rename, fsync of the directory): a crash leaves the previous
checkpoints intact. The last ``keep`` are kept.

Parameter versions must only grow, also across a ``kill -9`` that loses the versions published
after the last checkpoint. The learner therefore leases versions ahead (``VERSION_LEASE`` at a
time) in a small file written before a version past the lease is published; a restart continues
above both the checkpoint's version and the lease.
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path
from typing import Any

import jax
import numpy as np

from shared import codec
from shared.errors import DecodeError

FORMAT = 1
VERSION_LEASE = 1000
_NAME = re.compile(r"^ckpt-(\d+)\.msgpack$")
_LEASE_FILE = "param_version.lease"


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be read or does not fit this learner; the message says why."""


def state_to_nest(state: Any) -> dict[str, Any]:
    """The leaves of a training-state pytree as numpy arrays (typed PRNG keys as key data)."""
    leaves = jax.tree_util.tree_leaves(state)
    out: list[np.ndarray] = []
    prng: list[int] = []
    for i, leaf in enumerate(leaves):
        if jax.dtypes.issubdtype(getattr(leaf, "dtype", None), jax.dtypes.prng_key):
            prng.append(i)
            leaf = jax.random.key_data(leaf)
        out.append(np.asarray(leaf))
    return {"leaves": out, "prng_leaves": prng}


def state_from_nest(template: Any, nest: dict[str, Any]) -> Any:
    """Rebuilds a training state from ``state_to_nest``'s output, shaped like ``template``."""
    t_leaves, treedef = jax.tree_util.tree_flatten(template)
    leaves = nest["leaves"]
    if len(leaves) != len(t_leaves):
        raise CheckpointError(
            f"checkpoint has {len(leaves)} state leaves, this learner's state has {len(t_leaves)}:"
            " the agent config (network sizes, optimizer) differs from the checkpoint's"
        )
    prng = set(nest["prng_leaves"])
    restored = []
    for i, (saved, want) in enumerate(zip(leaves, t_leaves, strict=True)):
        if i in prng:
            impl = jax.random.key_impl(want)
            restored.append(jax.random.wrap_key_data(np.array(saved), impl=impl))
            continue
        want_shape, want_dtype = tuple(want.shape), np.dtype(want.dtype)  # arrays or shape structs
        if saved.shape != want_shape or saved.dtype != want_dtype:
            raise CheckpointError(
                f"state leaf {i} is {saved.dtype}{list(saved.shape)} in the checkpoint but"
                f" {want_dtype}{list(want_shape)} here: the agent config differs"
            )
        restored.append(jax.numpy.array(saved))
    return jax.tree_util.tree_unflatten(treedef, restored)


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def check_compatible(path: Path, checkpoint: dict[str, Any], *, agent: str, env_id: str) -> None:
    """Refuses a checkpoint written for another agent or environment."""
    for key, have in (("agent", agent), ("env_id", env_id)):
        if checkpoint.get(key) != have:
            raise CheckpointError(
                f"{path} was written for {key}={checkpoint.get(key)!r}, this learner has"
                f" {have!r}: point CHECKPOINT_DIR elsewhere"
            )


class Checkpointer:
    """Atomic checkpoint files in one directory; the last ``keep`` are kept."""

    def __init__(self, directory: Path, *, keep: int = 3) -> None:
        self.directory = Path(directory)
        self.keep = keep
        self.directory.mkdir(parents=True, exist_ok=True)
        for stale in self.directory.glob(".*.tmp-*"):
            stale.unlink(missing_ok=True)  # left by a crash in the middle of a write

    def paths(self) -> list[Path]:
        """Checkpoint files, oldest step first."""
        found = []
        for path in self.directory.iterdir():
            match = _NAME.match(path.name)
            if match:
                found.append((int(match.group(1)), path))
        return [path for _, path in sorted(found)]

    def save(self, checkpoint: dict[str, Any]) -> Path:
        """Writes ``checkpoint`` (which has a ``step``) atomically, then prunes old ones."""
        body = {"format": FORMAT, "saved_at": time.time(), **checkpoint}
        path = self.directory / f"ckpt-{int(checkpoint['step']):012d}.msgpack"
        _write_atomic(path, codec.encode(body))
        for old in self.paths()[: -self.keep]:
            old.unlink(missing_ok=True)
        return path

    def save_state(self, header: dict[str, Any], state: Any) -> Path:
        """``save`` with the training-state pytree stored as ``training_state``."""
        return self.save({**header, "training_state": state_to_nest(state)})

    def load_latest(self) -> tuple[Path, dict[str, Any]] | None:
        """The newest checkpoint, or None when there is none. Raises CheckpointError if unreadable."""
        paths = self.paths()
        if not paths:
            return None
        path = paths[-1]
        try:
            checkpoint = codec.decode(path.read_bytes())
        except (OSError, DecodeError) as e:
            raise CheckpointError(
                f"checkpoint {path} cannot be read ({e}); move it away to resume from the"
                " previous one"
            ) from e
        if not isinstance(checkpoint, dict) or checkpoint.get("format") != FORMAT:
            raise CheckpointError(f"{path} is not a format-{FORMAT} rlfleet learner checkpoint")
        return path, checkpoint

    def leased_version(self) -> int:
        """The highest parameter version that may have been published (0 when none)."""
        path = self.directory / _LEASE_FILE
        if not path.exists():
            return 0
        try:
            return int(json.loads(path.read_text())["version"])
        except (ValueError, KeyError, TypeError) as e:
            raise CheckpointError(f"{path} is damaged ({e}); delete it to start over") from e

    def lease_versions(self, upto: int) -> None:
        """Records that versions up to ``upto`` may be published."""
        _write_atomic(self.directory / _LEASE_FILE, json.dumps({"version": upto}).encode())
