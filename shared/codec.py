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

from shared import limits
from shared.errors import DecodeError

ARRAY_EXT_CODE = 1
CONTENT_TYPE = "application/msgpack"

_packer = msgpack.Packer(use_bin_type=True, autoreset=True)
_BIN_HEADERS = {0xC4: (1, ">B"), 0xC5: (2, ">H"), 0xC6: (4, ">I")}
_PLAIN = frozenset({int, float, bool, str, bytes, type(None)})
check_dtype = limits.check_dtype  # the dtype allow-list lives with the other wire limits


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
    return b"".join(encode_parts(obj))


def encode_parts(obj: Any) -> list[bytes | memoryview]:
    """``encode(obj)`` before the join: headers and zero-copy views of the arrays' bytes, for
    callers that assemble a larger message or write the parts out one by one."""
    chunks: list[Any] = []
    _encode_into(obj, chunks)
    return chunks


_UINT_FORMATS = {0xCC: ">B", 0xCD: ">H", 0xCE: ">I", 0xCF: ">Q"}


def _read_header(payload: bytes) -> tuple[Any, Any, int]:
    """``(dtype, shape, offset of the data's bin header)`` of an array payload.

    The usual encoding (fixstr dtype, fixarray of uint shape) is parsed by hand: a msgpack Unpacker
    per array costs more than the rest of the decode for small arrays.
    """
    n = len(payload)
    if n > 3 and payload[0] == 0x93 and 0xA0 <= payload[1] <= 0xBF:
        end = 2 + (payload[1] & 0x1F)
        if end < n and 0x90 <= payload[end] <= 0x9F:
            dtype_str = payload[2:end].decode("ascii", "replace")
            pos, shape = end + 1, []
            for _ in range(payload[end] & 0x0F):
                if pos >= n:
                    break
                b = payload[pos]
                if b <= 0x7F:
                    shape.append(b)
                    pos += 1
                elif b in _UINT_FORMATS:
                    fmt = _UINT_FORMATS[b]
                    if pos + 1 + struct.calcsize(fmt) > n:
                        break
                    shape.append(struct.unpack_from(fmt, payload, pos + 1)[0])
                    pos += 1 + struct.calcsize(fmt)
                else:
                    break
            else:
                return dtype_str, shape, pos
    unpacker = msgpack.Unpacker(raw=False, strict_map_key=True, max_buffer_size=max(n, 1))
    unpacker.feed(payload)
    try:
        if unpacker.read_array_header() != 3:
            raise DecodeError("array payload must be the list [dtype, shape, data]")
        dtype_str = unpacker.unpack()
        shape = unpacker.unpack()
    except DecodeError:
        raise
    except Exception as e:  # msgpack raises several unrelated types for malformed bytes
        raise DecodeError(f"malformed array payload: {e}") from e
    return dtype_str, shape, unpacker.tell()


def _ext_hook(code: int, payload: bytes) -> np.ndarray:
    if code != ARRAY_EXT_CODE:
        raise DecodeError(f"unknown MessagePack ext type code {code}; only 1 (array) is allowed")
    dtype_str, shape, offset = _read_header(payload)
    dtype = check_dtype(dtype_str)
    shape = limits.check_shape(shape, dtype.itemsize)
    marker = payload[offset] if offset < len(payload) else None
    if marker not in _BIN_HEADERS:
        raise DecodeError("array data must be MessagePack bin bytes")
    size_len, size_fmt = _BIN_HEADERS[marker]
    if offset + 1 + size_len > len(payload):
        raise DecodeError("array data header is cut short")
    (nbytes,) = struct.unpack_from(size_fmt, payload, offset + 1)
    start = offset + 1 + size_len
    if start + nbytes != len(payload):
        raise DecodeError("array payload has bytes after its data, or its data is cut short")
    count = math.prod(shape)
    if nbytes != count * dtype.itemsize:
        raise DecodeError(
            f"array data has {nbytes} bytes but dtype {dtype_str} and shape {shape}"
            f" need {count * dtype.itemsize}"
        )
    # Views the payload in place (no second copy); read-only.
    return np.frombuffer(payload, dtype=dtype, count=count, offset=start).reshape(shape)


def decode(data: bytes | bytearray | memoryview, *, max_bytes: int | None = None) -> Any:
    """Decodes MessagePack bytes into a nest whose arrays are read-only numpy arrays.

    Raises DecodeError for malformed input, unknown ext codes, byte lengths that do not match the
    shape, bodies over ``max_bytes`` and anything over the wire limits (``shared.limits``: depth,
    keys, dtypes, shapes, sizes).
    """
    if max_bytes is not None and len(data) > max_bytes:
        raise DecodeError(f"body of {len(data)} bytes is over the limit of {max_bytes} bytes")
    counter = limits.NodeCounter()
    try:
        nest = msgpack.unpackb(
            data,
            raw=False,
            ext_hook=_ext_hook,
            strict_map_key=True,
            use_list=True,
            list_hook=counter,
            object_hook=counter,
            max_str_len=limits.MAX_STR_BYTES,
            max_array_len=limits.MAX_LIST_LEN,
            max_map_len=limits.MAX_MAP_LEN,
        )
    except DecodeError:
        raise
    except msgpack.StackError as e:
        raise DecodeError(f"body is nested deeper than {limits.MAX_DEPTH} levels") from e
    except Exception as e:  # ValueError, ExtraData, FormatError, TypeError...
        raise DecodeError(f"malformed MessagePack body: {e}") from e
    limits.check_nest(nest)
    return nest
