"""Property tests of shared.codec: every allowed array round-trips; every refusal of the contract."""

from __future__ import annotations

import contextlib
from typing import Any

import msgpack
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from shared import codec, limits
from shared.errors import DecodeError

ALLOWED = [
    f"{order}{kind}{size}"
    for kind, sizes in (("i", (1, 2, 4, 8)), ("u", (1, 2, 4, 8)), ("f", (2, 4, 8)))
    for size in sizes
    for order in ("<", ">")
] + ["|b1"]

dtypes = st.sampled_from(ALLOWED).map(np.dtype)
arrays = dtypes.flatmap(
    lambda dtype: hnp.arrays(
        dtype, hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=5)
    )
)
scalars = st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.text(max_size=8)
scalars |= st.floats(allow_nan=False) | st.binary(max_size=8)
keys = st.text(min_size=1, max_size=5).filter(lambda k: limits.key_problem(k) is None)
nests = st.recursive(
    arrays | scalars,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(keys, children, max_size=3),
    max_leaves=8,
)


def assert_same(a: Any, b: Any) -> None:
    if isinstance(a, np.ndarray):
        assert isinstance(b, np.ndarray)
        assert a.dtype.str == b.dtype.str and a.shape == b.shape
        np.testing.assert_array_equal(a, b)  # NaN == NaN here
        assert not b.flags.writeable
    elif isinstance(a, dict):
        assert isinstance(b, dict) and list(a) == list(b)
        for key in a:
            assert_same(a[key], b[key])
    elif isinstance(a, list | tuple):
        assert isinstance(b, list) and len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            assert_same(x, y)
    else:
        assert a == b


@settings(max_examples=150, deadline=None)
@given(arrays)
def test_every_allowed_array_round_trips(array: np.ndarray) -> None:
    assert_same(array, codec.decode(codec.encode(array)))


@settings(max_examples=80, deadline=None)
@given(nests)
def test_nests_round_trip(nest: Any) -> None:
    assert_same(nest, codec.decode(codec.encode(nest)))


@given(dtypes)
def test_numpy_scalars_are_0d_arrays(dtype: np.dtype) -> None:
    scalar = dtype.type(1)  # numpy scalars are native-endian
    out = codec.decode(codec.encode(scalar))
    assert out.shape == () and out.dtype == scalar.dtype and out[()] == scalar


def test_non_contiguous_arrays_round_trip() -> None:
    array = np.arange(24, dtype=np.int16).reshape(4, 6)[:, ::2].T
    assert_same(array, codec.decode(codec.encode(array)))


def ext(payload: list[Any], code: int = codec.ARRAY_EXT_CODE) -> bytes:
    return msgpack.packb(msgpack.ExtType(code, msgpack.packb(payload, use_bin_type=True)))


@pytest.mark.parametrize(
    "body",
    [
        ext(["|O", [1], b"\x00" * 8]),
        ext(["<c8", [1], b"\x00" * 8]),
        ext(["<U2", [1], b"\x00" * 8]),
        ext(["<M8[s]", [1], b"\x00" * 8]),
        ext(["V8", [1], b"\x00" * 8]),
        ext([[["a", "<i4"]], [1], b"\x00" * 4]),
        ext(["nonsense", [1], b"\x00"]),
        ext([4, [1], b"\x00" * 4]),
    ],
    ids=["object", "complex", "unicode", "datetime", "void", "structured", "unknown", "not-a-str"],
)
def test_disallowed_dtypes_are_refused(body: bytes) -> None:
    with pytest.raises(DecodeError, match="dtype"):
        codec.decode(body)


@settings(max_examples=50, deadline=None)
@given(st.integers(0, 127).filter(lambda c: c != codec.ARRAY_EXT_CODE))
def test_unknown_ext_codes_are_refused(code: int) -> None:
    with pytest.raises(DecodeError, match="ext"):
        codec.decode(ext(["<i4", [1], b"\x00" * 4], code=code))


@settings(max_examples=100, deadline=None)
@given(
    dtypes,
    hnp.array_shapes(min_dims=0, max_dims=3, max_side=4),
    st.integers(-9, 9).filter(lambda d: d != 0),
)
def test_byte_length_mismatches_are_refused(dtype: np.dtype, shape: tuple, delta: int) -> None:
    size = int(np.prod(shape)) * dtype.itemsize
    data = b"\x00" * max(0, size + delta)
    if len(data) == size:
        return
    with pytest.raises(DecodeError, match="bytes"):
        codec.decode(ext([dtype.str, list(shape), data]))


@pytest.mark.parametrize(
    "payload",
    [
        ["<i4", [-1], b""],
        ["<i4", "4", b"\x00" * 16],
        ["<i4", [True], b"\x00" * 4],
        ["<i4", [1] * 33, b"\x00" * 4],
        ["<i4", [1], "text"],
        ["<i4", [1]],
        {"dtype": "<i4"},
    ],
    ids=["negative", "str-shape", "bool-dim", "too-many-dims", "str-data", "short", "map"],
)
def test_malformed_array_payloads_are_refused(payload: Any) -> None:
    with pytest.raises(DecodeError):
        codec.decode(ext(payload))


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=64))
def test_arbitrary_bytes_decode_or_raise_decode_error(data: bytes) -> None:
    with contextlib.suppress(DecodeError):
        codec.decode(data)


def test_malformed_bodies_and_size_limit() -> None:
    for body in (b"\xc1", b"\x92\x01", msgpack.packb({1: 2}), b"\x81\xa1a"):
        with pytest.raises(DecodeError):
            codec.decode(body)
    body = codec.encode({"x": np.zeros(100)})
    assert codec.decode(body, max_bytes=len(body))["x"].shape == (100,)
    with pytest.raises(DecodeError, match="limit"):
        codec.decode(body, max_bytes=len(body) - 1)


def test_encode_refuses_disallowed_arrays() -> None:
    for array in (np.array(["a"]), np.array([1 + 2j]), np.array([object()])):
        with pytest.raises(DecodeError):
            codec.encode(array)
