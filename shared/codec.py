"""The one MessagePack <-> nest-of-arrays codec (CONTRACT.md, "Arrays inside MessagePack").

A numpy array (or numpy scalar, as a 0-d array) travels as ExtType code 1 whose payload is the
MessagePack list ``[dtype.str, shape, data]``; ``data`` is the raw C-order bytes. Everything else is
plain MessagePack. Nothing is ever unpickled.

Encoding copies each array's bytes exactly once: the message is assembled as a list of chunks
(small headers and zero-copy views of the arrays) that are joined a single time.
Decoding returns read-only arrays that view the payload bytes.
"""

from __future__ import annotations

import math
import struct
from typing import Any

import msgpack
import numpy as np

from shared.errors import DecodeError

ARRAY_EXT_CODE = 1
CONTENT_TYPE = "application/msgpack"

# bool, signed/unsigned ints of 8-64 bits, floats of 16-64 bits.
ALLOWED_KINDS = {"b": (1,), "i": (1, 2, 4, 8), "u": (1, 2, 4, 8), "f": (2, 4, 8)}
MAX_NDIM = 32

_packer = msgpack.Packer(use_bin_type=True, autoreset=True)
_PLAIN = frozenset({int, float, bool, str, bytes, type(None)})


def check_dtype(dtype_str: str) -> np.dtype:
    """Returns the numpy dtype named by ``dtype_str`` or raises DecodeError if it is not allowed."""
    if not isinstance(dtype_str, str):
        raise DecodeError(
            f"array dtype must be a string like '<f4', got {type(dtype_str).__name__}"
        )
    try:
        dtype = np.dtype(dtype_str)
    except TypeError as e:
        raise DecodeError(f"unknown array dtype {dtype_str!r}") from e
    if dtype.fields is not None or dtype.subdtype is not None:
        raise DecodeError(f"array dtype {dtype_str!r} is structured; only plain dtypes are allowed")
    if dtype.itemsize not in ALLOWED_KINDS.get(dtype.kind, ()):
        raise DecodeError(
            f"array dtype {dtype_str!r} is not allowed: use bool, (u)int8-64 or float16-64"
        )
    return dtype


def _array_chunks(array: np.ndarray) -> list[Any]:
    """The ExtType bytes of one array, as [header, data view]."""
    check_dtype(array.dtype.str)
    if not array.flags.c_contiguous:
        array = np.ascontiguousarray(array)  # the one copy of a non-contiguous array
    inner_head = b"\x93" + _packer.pack(array.dtype.str) + _packer.pack(list(array.shape))
    nbytes = array.nbytes
    inner_head += b"\xc6" + struct.pack(">I", nbytes)  # bin32 header
    payload_len = len(inner_head) + nbytes
    ext_head = b"\xc9" + struct.pack(">Ib", payload_len, ARRAY_EXT_CODE)  # ext32 header
    data = memoryview(array.reshape(-1).view(np.uint8)) if nbytes else b""
    return [ext_head + inner_head, data]


def _encode_into(obj: Any, out: list[Any]) -> None:
    if isinstance(obj, np.ndarray):
        out.extend(_array_chunks(obj))
    elif isinstance(obj, np.generic):
        out.extend(_array_chunks(np.asarray(obj)))
    elif isinstance(obj, dict):
        out.append(_packer.pack_map_header(len(obj)))
        for key, value in obj.items():
            if not isinstance(key, str):
                raise TypeError(f"map keys must be strings, got {key!r}")
            out.append(_packer.pack(key))
            _encode_into(value, out)
    elif isinstance(obj, list | tuple):
        if _PLAIN.issuperset(map(type, obj)):
            out.append(_packer.pack(obj))  # e.g. keys or priorities: one C call, not one per item
            return
        out.append(_packer.pack_array_header(len(obj)))
        for value in obj:
            _encode_into(value, out)
    elif hasattr(obj, "__array__") and not isinstance(obj, str | bytes):
        out.extend(_array_chunks(np.asarray(obj)))  # jax.Array and friends
    else:
        out.append(_packer.pack(obj))


def encode(obj: Any) -> bytes:
    """Encodes a nest (maps, lists, arrays, scalars) as MessagePack bytes."""
    chunks: list[Any] = []
    _encode_into(obj, chunks)
    return b"".join(chunks)


def _ext_hook(code: int, payload: bytes) -> np.ndarray:
    if code != ARRAY_EXT_CODE:
        raise DecodeError(f"unknown MessagePack ext type code {code}; only 1 (array) is allowed")
    try:
        header = msgpack.unpackb(payload, raw=False, strict_map_key=True)
    except Exception as e:  # msgpack raises several unrelated types for malformed bytes
        raise DecodeError(f"malformed array payload: {e}") from e
    if not isinstance(header, list) or len(header) != 3:
        raise DecodeError("array payload must be the list [dtype, shape, data]")
    dtype_str, shape, data = header
    dtype = check_dtype(dtype_str)
    if (
        not isinstance(shape, list)
        or len(shape) > MAX_NDIM
        or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)
    ):
        raise DecodeError(f"array shape must be a list of non-negative ints, got {shape!r}")
    if not isinstance(data, bytes):
        raise DecodeError("array data must be MessagePack bin bytes")
    expected = math.prod(shape) * dtype.itemsize
    if len(data) != expected:
        raise DecodeError(
            f"array data has {len(data)} bytes but dtype {dtype_str} and shape {shape} need {expected}"
        )
    return np.frombuffer(data, dtype=dtype).reshape(shape)


def decode(data: bytes | bytearray | memoryview, *, max_bytes: int | None = None) -> Any:
    """Decodes MessagePack bytes into a nest whose arrays are read-only numpy arrays.

    Raises DecodeError for malformed input, unknown ext codes, disallowed dtypes, byte lengths that
    do not match the shape, and bodies over ``max_bytes``.
    """
    if max_bytes is not None and len(data) > max_bytes:
        raise DecodeError(f"body of {len(data)} bytes is over the limit of {max_bytes} bytes")
    try:
        return msgpack.unpackb(
            data, raw=False, ext_hook=_ext_hook, strict_map_key=True, use_list=True
        )
    except DecodeError:
        raise
    except Exception as e:  # ValueError, ExtraData, FormatError, StackError, TypeError...
        raise DecodeError(f"malformed MessagePack body: {e}") from e
