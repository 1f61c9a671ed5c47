"""What every fuzz test shares: the budget, the counts, the log watch, adversarial bodies.

``FUZZ_EXAMPLES`` (default 6) is the number of cases per endpoint and strategy; ``make fuzz``
raises it. Every case is counted per endpoint (``COUNTS``) and the counts are printed at the end
of the session (tests/fuzz/conftest.py), with the failures.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

import msgpack
import numpy as np
import requests
import schemathesis
from hypothesis import HealthCheck, given, reject, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from schemathesis import GenerationMode

from shared import codec, limits

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "6"))
COUNTS: dict[str, Counter] = {}


def fuzz(endpoint: str, strategy: st.SearchStrategy, check: Callable[[Any], int]) -> None:
    """Runs ``check`` on ``EXAMPLES`` cases drawn from ``strategy``, counted under ``endpoint``
    with the status classes ``check`` returns (so a run shows how many cases were accepted)."""
    counts = COUNTS.setdefault(endpoint, Counter())

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=strategy)
    def run(case: Any) -> None:
        counts["cases"] += 1
        try:
            counts[f"{check(case) // 100}xx"] += 1
        except (requests.exceptions.InvalidURL, requests.exceptions.InvalidHeader):
            reject()  # a request the client library cannot even send
        except AssertionError:
            counts["failing cases"] += 1
            raise

    try:
        run()
    except Exception:
        counts["failures"] += 1
        raise


@schemathesis.serializer(codec.CONTENT_TYPE)
def _msgpack(context: Any, value: Any) -> bytes:
    return msgpack.packb(value, use_bin_type=True)


def call(case: Any, base_url: str) -> Any:
    """Sends a schemathesis case; one that MessagePack cannot carry (an int beyond 64 bits) is
    not a case."""
    try:
        return case.call(base_url=base_url, timeout=10)
    except OverflowError:
        reject()


def operations(openapi: dict[str, Any]) -> Iterator[tuple[Any, tuple[Any, ...]]]:
    """Every operation of an OpenAPI schema, with the generation modes worth running: negative
    cases need a body to break (a free path name or header has no constraint)."""
    schema = schemathesis.openapi.from_dict(openapi)
    for result in schema.get_all_operations():
        operation = result.ok()
        negative = (GenerationMode.NEGATIVE,) if len(operation.body) else ()
        yield operation, (GenerationMode.POSITIVE, *negative)


def status_ok(response: Any) -> None:
    """No 5xx, but ``/healthz``'s documented 503 (what the service needs cannot be reached)."""
    assert response.status_code < 500 or (
        response.status_code == 503 and urlsplit(str(response.request.url)).path == "/healthz"
    ), f"{response.status_code}: {response.content[:300]!r}"


class LogWatch(logging.Handler):
    """Collects every record with a traceback or at ERROR and above, from the services running in
    this process (root and uvicorn's loggers, which do not propagate to the root)."""

    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self.bad: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info or record.levelno >= logging.ERROR:
            self.bad.append(self.format(record) if record.exc_info else record.getMessage())

    def assert_clean(self) -> None:
        assert not self.bad, "the service logged:\n" + "\n".join(self.bad[:3])


@contextmanager
def watch_logs() -> Iterator[LogWatch]:
    watch = LogWatch()
    loggers = [
        logging.getLogger(),
        logging.getLogger("uvicorn"),
        logging.getLogger("uvicorn.error"),
    ]
    for logger in loggers:
        logger.addHandler(watch)
    try:
        yield watch
    finally:
        for logger in loggers:
            logger.removeHandler(watch)


# -- adversarial bodies ------------------------------------------------------------------------
ALLOWED = sorted(limits.DTYPES)
BAD_DTYPES = [",", "|O", "i4,i4", "(2,)<f4", "<U4", "V8", "<M8", "float32", "", "<f16", "S3", "<c8"]
dtype_strings = st.sampled_from(ALLOWED + BAD_DTYPES) | st.text(max_size=8)
dims = st.integers(0, 3) | st.sampled_from([2**31, 2**40, 2**62, 2**64 - 1])
shapes = (
    st.lists(dims, max_size=4)
    | st.lists(st.just(1), min_size=30, max_size=100)
    | st.integers(-(2**63), 2**64 - 1)
    | st.text(max_size=3)
    | st.lists(st.floats(0, 3) | st.booleans() | st.integers(-3, -1), max_size=2)
)


def _ext(array: np.ndarray) -> msgpack.ExtType:
    payload = msgpack.packb([array.dtype.str, list(array.shape), array.tobytes()])
    return msgpack.ExtType(codec.ARRAY_EXT_CODE, payload)


@st.composite
def raw_arrays(draw: Any) -> msgpack.ExtType:
    """An array ExtType with any dtype string and shape: byte lengths right, off by one or
    random; ext codes mostly 1; payloads sometimes not ``[dtype, shape, data]``."""
    dtype, shape = draw(dtype_strings), draw(shapes)
    itemsize = np.dtype(dtype).itemsize if dtype in limits.DTYPES else draw(st.integers(1, 8))
    if isinstance(shape, list) and all(type(d) is int and 0 <= d <= 3 for d in shape):
        length = math.prod(shape) * itemsize + draw(st.sampled_from([0, 0, 0, 1, -1]))
        data = bytes(max(length, 0))
    else:
        data = draw(st.binary(max_size=16))
    payload = draw(
        st.sampled_from([[dtype, shape, data]] * 4 + [[dtype, shape], [dtype, shape, data, 1], {}])
    )
    code = draw(st.just(codec.ARRAY_EXT_CODE) | st.integers(0, 127))
    raw = msgpack.packb(payload, use_bin_type=True)
    return msgpack.ExtType(
        code, raw[: draw(st.integers(0, len(raw)))] if draw(st.booleans()) and not raw else raw
    )


good_arrays = hnp.arrays(
    dtype=st.sampled_from(ALLOWED).map(np.dtype),
    shape=hnp.array_shapes(min_dims=0, max_dims=2, min_side=0, max_side=3),
).map(_ext)
scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats()
    | st.text(max_size=5)
    | st.binary(max_size=5)
)
keys = st.sampled_from(["x", "obs", "a", "data", "", "a/b", "k" * 200, "\x00"]) | st.text(
    max_size=4
)
nests = st.recursive(
    good_arrays | raw_arrays() | scalars,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(keys, children, max_size=3),
    max_leaves=12,
)


def deep_nest(depth: int) -> Any:
    node: Any = 1
    for i in range(depth):
        node = {"a": node} if i % 2 else [node]
    return node


deep = st.integers(limits.MAX_DEPTH - 4, 400).map(deep_nest)  # msgpack packs up to ~500 levels
deep_bytes = st.integers(limits.MAX_DEPTH - 4, 100_000).map(
    lambda depth: b"\x81\xa5items\x91\x81\xa4data" + b"\x91\x81\xa1a" * (depth // 2) + b"\x01"
)
ints = st.integers(-(2**63), 2**64 - 1)
numbers = st.integers(-3, 3) | st.floats() | ints | st.text(max_size=2) | st.none()
timeouts = st.integers(0, 20) | st.sampled_from([-1, 10**9, 1.5, float("nan"), "5", None])
# Items the seeded tables accept (tests/fuzz/test_replay_fuzz.py): some cases must be accepted.
valid_data = st.fixed_dictionaries({"x": st.integers(-(2**63), 2**63 - 1)}) | st.fixed_dictionaries(
    {"obs": hnp.arrays(np.float32, 3).map(_ext), "a": st.integers(-(2**63), 2**63 - 1)}
)
data = valid_data | nests | deep
insert_bodies = st.fixed_dictionaries(
    {
        "items": st.lists(
            st.fixed_dictionaries({"data": data}, optional={"priority": numbers}), max_size=3
        )
    },
    optional={"timeout_ms": timeouts},
) | st.fixed_dictionaries(
    {"columns": nests | valid_data.map(lambda d: {k: [v] for k, v in d.items()})},
    optional={"priorities": st.lists(numbers, max_size=3) | good_arrays, "timeout_ms": timeouts},
)
sample_bodies = st.fixed_dictionaries(
    {},
    optional={
        "batch_size": st.integers(-2, 5) | st.sampled_from([2**16 + 1, 2**63, 1_001_000]) | numbers,
        "timeout_ms": timeouts,
    },
)
key_lists = st.lists(st.integers(-2, 2**20) | ints, max_size=3) | good_arrays | numbers
priorities_bodies = st.fixed_dictionaries(
    {},
    optional={
        "keys": key_lists,
        "priorities": st.lists(numbers, max_size=3) | good_arrays | numbers,
        "deletes": key_lists,
    },
)


def packed(bodies: st.SearchStrategy) -> st.SearchStrategy[bytes]:
    """MessagePack bytes of ``bodies`` (or of any nest, or random bytes), sometimes truncated."""
    encoded = (bodies | nests | deep).map(lambda body: msgpack.packb(body, use_bin_type=True))
    truncated = st.tuples(encoded, st.floats(0, 1)).map(lambda t: t[0][: int(len(t[0]) * t[1])])
    return encoded | encoded | truncated | deep_bytes | st.binary(max_size=64)


json_numbers = st.integers(-(2**70), 2**70) | st.floats(allow_nan=False, allow_infinity=False)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=4),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(keys, children, max_size=3),
    max_leaves=10,
)
json_bodies = (
    st.fixed_dictionaries(
        {
            "items": st.lists(
                st.fixed_dictionaries(
                    {"data": json_values | st.fixed_dictionaries({"x": json_numbers})},
                    optional={"priority": json_numbers},
                ),
                max_size=3,
            )
        },
        optional={"timeout_ms": st.integers(0, 20)},
    )
    | st.fixed_dictionaries(
        {},
        optional={
            "keys": st.lists(json_numbers, max_size=3),
            "priorities": st.lists(json_numbers, max_size=3),
            "deletes": st.lists(json_numbers, max_size=2),
        },
    )
    | st.fixed_dictionaries(
        {
            "actor_id": st.text(max_size=5),
            "steps": json_numbers,
            "episodes": st.lists(
                st.fixed_dictionaries({"return": json_numbers, "length": json_numbers}), max_size=2
            ),
        }
    )
)
JSON_EDGES = [b"1e400", b"NaN", b"-Infinity", b"9" * 400, b"[" * 5000, b'{"a":' * 3000, b"{", b""]


def json_texts() -> st.SearchStrategy[bytes]:
    """JSON texts: plain bodies, numbers beyond int64 and the float range, deep nests, junk."""
    plain = (json_bodies | json_values).map(lambda body: json.dumps(body).encode())
    edges = st.sampled_from(JSON_EDGES)
    spliced = st.tuples(plain, edges).map(lambda t: t[0].replace(b"1", t[1], 1))
    return plain | edges | spliced | st.binary(max_size=32)
