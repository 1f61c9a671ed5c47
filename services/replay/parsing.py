"""Request bodies of the replay routes, checked and turned into columns, priorities and keys.

Everything here raises ``shared.errors.InvalidRequest`` (422) with what is wrong; nothing here
touches a table.
"""

from __future__ import annotations

from itertools import pairwise
from typing import Any

import numpy as np

from services.replay.storage.base import Columns
from shared import limits
from shared.errors import InvalidRequest
from shared.nest import flatten, path_str

DEFAULT_TIMEOUT_MS = 5_000
MAX_TIMEOUT_MS = 600_000


def require_map(body: Any, what: str) -> None:
    if not isinstance(body, dict):
        raise InvalidRequest(f"the {what} body must be a map, got {type(body).__name__}")


def timeout_ms_of(body: dict[str, Any]) -> int:
    timeout_ms = body.get("timeout_ms", DEFAULT_TIMEOUT_MS)
    if not isinstance(timeout_ms, int | float) or isinstance(timeout_ms, bool):
        raise InvalidRequest(f"timeout_ms must be a number, got {timeout_ms!r}")
    if not (0 <= timeout_ms <= MAX_TIMEOUT_MS):
        raise InvalidRequest(f"timeout_ms must be between 0 and {MAX_TIMEOUT_MS}")
    return int(timeout_ms)


def _check_paths(pairs: list[tuple[tuple[Any, ...], Any]], what: str) -> None:
    if not pairs:
        raise InvalidRequest(f"{what} has no leaves")
    limits.check_leaves(len(pairs), what)
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


def columns_form(body: dict[str, Any]) -> tuple[Columns, np.ndarray]:
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
    priorities = priorities_of(body.get("priorities", 1.0), n)
    return columns, priorities


def items_form(items: Any, signature: Any) -> tuple[Columns, np.ndarray]:
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
    return columns, priorities_of(priorities, len(items))


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
    leaf = np.array(value)
    limits.check_dtype(leaf.dtype.str)  # e.g. an int beyond int64/uint64 would be an object array
    return leaf


def priorities_of(value: Any, n: int | None = None) -> np.ndarray:
    if isinstance(value, int | float) and not isinstance(value, bool) and n is not None:
        value = [value] * n
    if isinstance(value, np.ndarray):
        if value.dtype.kind != "f" or value.ndim != 1:
            raise InvalidRequest(
                f"priorities must be a 1-d float array (f2, f4 or f8), got {value.dtype.str}"
                f" {list(value.shape)}"
            )
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


def keys_of(value: Any, what: str) -> np.ndarray:
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
