"""What may cross the wire: every limit a body is held to, in one place (docs/contract.md, "Limits").

Every body a service reads goes through ``shared.codec.decode`` (MessagePack) or ``loads_json``
(JSON); both end in ``check_nest``, and every array header in ``check_array``. So whatever a
request may store (an item, a table's signature or template) is small enough, shallow enough and
plain enough that a later request of anyone can list, read and sample it: one request cannot
poison a table for everybody. Each limit refused raises ``DecodeError`` (a 422 with the reason).

The limits, and why each one is where it is:

- nesting depth ``MAX_DEPTH`` (32): real nests are 1-4 deep (an item, flax parameters); the
  recursive walks that read them back (pydantic's serializer, ``shared.nest``) stop near 1000;
- leaves of one nest ``MAX_LEAVES`` (4096): an item's or a signature's leaves become columns,
  each with its own array;
- containers and elements of one body ``MAX_NODES`` (2**22) and of one list ``MAX_LIST_LEN``
  (2**20): a 256 MB body of one-byte empty lists would otherwise become gigabytes of objects;
- map keys: strings of 1 to ``MAX_KEY_CHARS`` (128) printable characters without ``/`` (the
  separator of leaf names such as ``obs/0``); table names: ``TABLE_NAME`` (a letter, digit or
  ``_`` first, so never ``.`` or ``..``, which clients fold into the path);
- dtypes: exactly the strings in ``DTYPES`` (numpy's ``dtype.str`` of bool, (u)int8-64 and
  float16-64, either byte order); a string is never handed to ``np.dtype`` before it matched,
  so nothing is parsed as a structured dtype;
- shapes: at most ``MAX_NDIM`` (32) non-negative ints whose product (zeros counted as one,
  computed exactly with Python ints) stays within ``MAX_ELEMENTS`` and, where a service knows
  it, within its body limit;
- JSON numbers: integers within int64/uint64 (what MessagePack can carry), finite floats only
  (``1e400``, ``NaN`` and ``Infinity`` are refused instead of becoming inf or NaN).
"""

from __future__ import annotations

import functools
import json
import math
from typing import Any

import numpy as np

from shared.errors import DecodeError

MAX_DEPTH = 32
MAX_LEAVES = 4096
MAX_NODES = 1 << 22
MAX_LIST_LEN = 1 << 20
MAX_MAP_LEN = 1 << 16
MAX_STR_BYTES = 1 << 20
MAX_KEY_CHARS = 128
MAX_NDIM = 32
MAX_ELEMENTS = 1 << 40
INT_MIN, INT_MAX = -(1 << 63), (1 << 64) - 1
TABLE_NAME = r"^[A-Za-z0-9_][A-Za-z0-9_.:-]{0,127}$"

DTYPES = frozenset(
    {"|b1", "|i1", "|u1"}
    | {f"{order}{kind}{size}" for order in "<>" for kind in "iu" for size in (2, 4, 8)}
    | {f"{order}f{size}" for order in "<>" for size in (2, 4, 8)}
)


@functools.lru_cache(maxsize=64)
def _dtype(dtype_str: str) -> np.dtype:
    return np.dtype(dtype_str)


def check_dtype(dtype_str: Any) -> np.dtype:
    """The numpy dtype named by ``dtype_str``, which must be one of ``DTYPES`` exactly."""
    if not isinstance(dtype_str, str) or dtype_str not in DTYPES:
        raise DecodeError(
            f"array dtype {dtype_str!r} is not allowed: use numpy's dtype.str of bool, (u)int8-64"
            " or float16-64, e.g. '<f4', '<i8', '|u1', '|b1'"
        )
    return _dtype(dtype_str)


def check_shape(shape: Any, itemsize: int = 1, *, max_bytes: int | None = None) -> tuple[int, ...]:
    """``shape`` as a tuple, if it is a list of at most MAX_NDIM ints >= 0 whose product (zeros
    counted as one) times ``itemsize`` stays within MAX_ELEMENTS and ``max_bytes``."""
    if (
        not isinstance(shape, list | tuple)
        or len(shape) > MAX_NDIM
        or not all(type(d) is int and d >= 0 for d in shape)
    ):
        raise DecodeError(
            f"array shape must be a list of at most {MAX_NDIM} ints >= 0, got {_short(shape)}"
        )
    elements = 1
    for d in shape:  # exact (Python ints) and stops as soon as it is too large
        elements *= max(d, 1)
        if elements > MAX_ELEMENTS or (max_bytes is not None and elements * itemsize > max_bytes):
            bound = f"{max_bytes} bytes" if max_bytes is not None else f"{MAX_ELEMENTS} elements"
            raise DecodeError(f"array shape {_short(shape)} is over the limit of {bound}")
    return tuple(shape)


@functools.lru_cache(maxsize=4096)
def key_problem(key: Any) -> str | None:
    if not isinstance(key, str):
        return f"map keys must be strings, got {_short(key)}"
    if not 1 <= len(key) <= MAX_KEY_CHARS or not key.isprintable() or "/" in key:
        return (
            f"map key {_short(key)} is not allowed: use 1 to {MAX_KEY_CHARS} printable characters"
            " without '/'"
        )
    return None


def check_nest(nest: Any, what: str = "body") -> None:
    """Refuses a nest deeper than MAX_DEPTH or with a map key that is not allowed. Iterative: a
    deep nest cannot exhaust the stack here; a list of plain values (keys, priorities) is passed
    over in C (``isdisjoint`` on the types of its elements), not element by element."""
    stack = [(nest, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            for key in node:
                problem = key_problem(key)
                if problem is not None:
                    raise DecodeError(f"{what}: {problem}")
            children: Any = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        if depth > MAX_DEPTH:
            raise DecodeError(f"{what} is nested deeper than {MAX_DEPTH} levels")
        if not _CONTAINERS.isdisjoint(map(type, children)):
            stack.extend((c, depth + 1) for c in children if type(c) in _CONTAINERS)


_CONTAINERS = frozenset({dict, list})


def check_leaves(count: int, what: str) -> None:
    if count > MAX_LEAVES:
        raise DecodeError(f"{what} has {count} leaves, over the limit of {MAX_LEAVES}")


class NodeCounter:
    """``list_hook``/``object_hook`` of the MessagePack decoder: stops a body as soon as it has
    built more than MAX_NODES containers and elements, before they take the memory."""

    __slots__ = ("count",)

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, node: Any) -> Any:
        self.count += 1 + len(node)
        if self.count > MAX_NODES:
            raise DecodeError(f"body has more than {MAX_NODES} values (maps, lists, elements)")
        return node


def _json_int(text: str) -> int:
    if len(text) > 21 or not INT_MIN <= (value := int(text)) <= INT_MAX:
        raise DecodeError(f"integer {text[:24]}{'...' * (len(text) > 24)} is outside int64/uint64")
    return value


def _json_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise DecodeError(f"number {text[:24]} is beyond the float range")
    return value


def _json_constant(text: str) -> float:
    raise DecodeError(f"{text} is not JSON: numbers must be finite")


def loads_json(raw: bytes | str) -> Any:
    """A JSON body under the same limits as a MessagePack one (``check_nest``, int64/uint64
    integers, finite floats), or DecodeError with the reason."""
    try:
        value = json.loads(
            raw, parse_int=_json_int, parse_float=_json_float, parse_constant=_json_constant
        )
    except DecodeError:
        raise
    except RecursionError as e:
        raise DecodeError(f"JSON body is nested deeper than {MAX_DEPTH} levels") from e
    except ValueError as e:  # JSONDecodeError, UnicodeDecodeError
        raise DecodeError(f"body is not valid JSON: {e}") from e
    check_nest(value, "JSON body")
    return value


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
