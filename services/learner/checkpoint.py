"""Checkpoints of the learner: the training state by name, the parameter version, the counters.

A checkpoint is one file ``ckpt-<step>.msgpack`` in rlfleet's own codec (no pickle)::

    {"format": 2, "agent": "dqn", "agent_config": {...}, "env_id": ...,
     "env_spec": {"observation_space": {...}, "action_space": {...}},
     "step": int, "param_version": int, "saved_at": float,
     "training_state": {"params": {"params": {"Dense_0": {"kernel": array, ...}}},
                        "target_params": {...}, "opt_state": {"0": {...}, "1": ...}, ...},
     "prng_keys": ["rng", ...],
     "counters": {...}}

The training state is stored as a nest of its named parts: every ``jax.tree_util`` key of the
agent's state pytree (a NamedTuple's field, a dict's key, a sequence's index) becomes a map key.
It is restored into a freshly initialized state of the same agent by those names, so a field the
agent reorders or renames is found or refused by name, never taken by position, and optax's state
classes never need to be serialized. Typed PRNG keys are stored as their key data (``prng_keys``
lists their paths).

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

FORMAT = 2
VERSION_LEASE = 1000
_NAME = re.compile(r"^ckpt-(\d+)\.msgpack$")
_LEASE_FILE = "param_version.lease"


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be read or does not fit this learner; the message says why."""


def _key_name(key: Any) -> str:
    for attr in ("name", "key", "idx"):  # GetAttrKey, DictKey, SequenceKey
        if hasattr(key, attr):
            return str(getattr(key, attr))
    return str(key)


def _named_leaves(tree: Any) -> list[tuple[tuple[str, ...], Any]]:
    leaves, _ = jax.tree_util.tree_flatten_with_path(tree)
    return [(tuple(_key_name(k) for k in path), leaf) for path, leaf in leaves]


def _is_prng_key(leaf: Any) -> bool:
    return jax.dtypes.issubdtype(getattr(leaf, "dtype", None), jax.dtypes.prng_key)


def state_to_nest(state: Any) -> tuple[dict[str, Any], list[str]]:
    """The training state as a nest of numpy arrays by name, and the paths of its PRNG keys."""
    nest: dict[str, Any] = {}
    prng: list[str] = []
    for path, leaf in _named_leaves(state):
        if _is_prng_key(leaf):
            prng.append("/".join(path))
            leaf = jax.random.key_data(leaf)
        node = nest
        for name in path[:-1]:
            node = node.setdefault(name, {})
        node[path[-1] if path else "value"] = np.asarray(leaf)
    return nest, prng


def state_from_nest(template: Any, nest: dict[str, Any]) -> Any:
    """A training state shaped like ``template`` with every part taken from ``nest`` by name."""
    restored = []
    wanted = set()
    for path, want in _named_leaves(template):
        where = "/".join(path)
        wanted.add(where)
        node: Any = nest
        for name in path or ("value",):
            if not isinstance(node, dict) or name not in node:
                raise CheckpointError(
                    f"the checkpoint has no {where!r}, which this learner's state has: the agent"
                    " or its config (networks, optimizer) differs from the checkpoint's"
                )
            node = node[name]
        saved = np.asarray(node)
        if _is_prng_key(want):
            restored.append(jax.random.wrap_key_data(saved, impl=jax.random.key_impl(want)))
            continue
        want_shape, want_dtype = tuple(want.shape), np.dtype(want.dtype)  # arrays or shape structs
        if saved.shape != want_shape or saved.dtype != want_dtype:
            raise CheckpointError(
                f"{where} is {saved.dtype}{list(saved.shape)} in the checkpoint but"
                f" {want_dtype}{list(want_shape)} here: the agent config differs"
            )
        restored.append(jax.numpy.array(saved))
    extra = sorted(set(_paths(nest)) - wanted)
    if extra:
        raise CheckpointError(
            f"the checkpoint holds {extra[:3]}{' ...' if len(extra) > 3 else ''}, which this"
            " learner's state has not: the agent or its config differs from the checkpoint's"
        )
    return jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(template), restored)


def _paths(nest: Any, prefix: tuple[str, ...] = ()) -> list[str]:
    if isinstance(nest, dict):
        return [p for k, v in nest.items() for p in _paths(v, (*prefix, k))]
    return ["/".join(prefix)]


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


def check_compatible(path: Path, checkpoint: dict[str, Any], header: dict[str, Any]) -> None:
    """Refuses a checkpoint written for another agent or environment (``header``: this one's)."""
    for key in ("agent", "env_id", "env_spec"):
        if checkpoint.get(key) != header[key]:
            raise CheckpointError(
                f"{path} was written for {key}={checkpoint.get(key)!r}, this learner has"
                f" {header[key]!r}: point CHECKPOINT_DIR elsewhere"
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
        """``save`` with the training-state pytree stored by name as ``training_state``."""
        nest, prng = state_to_nest(state)
        return self.save({**header, "training_state": nest, "prng_keys": prng})

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
        return path, check_format(path, checkpoint)

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


def check_format(path: Path, checkpoint: Any) -> dict[str, Any]:
    """``checkpoint`` if it is a checkpoint this version reads, else CheckpointError."""
    if not isinstance(checkpoint, dict) or "format" not in checkpoint:
        raise CheckpointError(f"{path} is not an rlfleet learner checkpoint")
    if checkpoint.get("format") != FORMAT:
        raise CheckpointError(
            f"{path} is a format-{checkpoint.get('format')} checkpoint; this rlfleet reads"
            f" format {FORMAT} (the training state by name, since 0.2): train anew"
        )
    return checkpoint


def read_checkpoint(path: Path) -> dict[str, Any]:
    """One checkpoint file, decoded and checked (``rlfleet eval``)."""
    try:
        checkpoint = codec.decode(Path(path).read_bytes())
    except (OSError, DecodeError) as e:
        raise CheckpointError(f"{path} cannot be read: {e}") from e
    checkpoint = check_format(path, checkpoint)
    if "training_state" not in checkpoint:
        raise CheckpointError(f"{path} holds no training state")
    return checkpoint
