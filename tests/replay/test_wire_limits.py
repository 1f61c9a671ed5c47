"""The probe's findings (issue 9), one regression test each, on both backends (memory and Redis).

Each of these used to answer 500 with a traceback, or was stored and broke later requests of
everyone. Now each is refused with a 422 that gives the reason, stores nothing, and the tables
stay listable, readable and sampleable (``assert_healthy``).
"""

from __future__ import annotations

import json
import re
from typing import Any

import msgpack
import numpy as np

from shared import codec, limits
from shared.clients import ReplayClient
from tests.replay.util import items, state, table

MSGPACK = {"Content-Type": codec.CONTENT_TYPE}
JSON = {"Content-Type": "application/json"}


async def post(replay: ReplayClient, path: str, body: bytes, headers: dict) -> Any:
    return await replay.request("POST", path, content=body, headers=headers)


def refused(response: Any, reason: str) -> None:
    assert response.status_code == 422, (response.status_code, response.content[:300])
    assert reason in response.json()["detail"], response.json()["detail"]


async def assert_healthy(replay: ReplayClient, name: str = "t") -> None:
    """Everyone's requests still work: list, read, insert and sample the table."""
    for path in ("/tables", f"/tables/{name}", "/status"):
        response = await replay.request("GET", path)
        assert response.status_code == 200, (path, response.content[:300])
    await replay.insert(name, data=items([7]))
    batch = await replay.sample(name, 1)
    assert batch.data["x"].dtype == np.int64


def deep_msgpack(depth: int) -> bytes:
    """``{"items": [{"data": {"a": {"a": ... 1}}}]}`` with ``depth`` nested maps under data."""
    return b"\x81\xa5items\x91\x81\xa4data" + b"\x81\xa1a" * depth + b"\x01"


def deep_json(depth: int) -> bytes:
    return ('{"items": [{"data": ' + '{"a": ' * depth + "1" + "}" * depth + "}]}").encode()


async def test_json_priority_of_400_digits_is_422(replay: ReplayClient) -> None:
    await replay.create_table("t", table(sampler={"kind": "prioritized"}))
    (key,) = await replay.insert("t", data=items([1]))
    body = f'{{"keys": [{key}], "priorities": [{"9" * 400}]}}'.encode()
    refused(await post(replay, "/tables/t/priorities", body, JSON), "int64")
    body = f'{{"items": [{{"data": {{"x": 1}}, "priority": {"9" * 400}}}]}}'.encode()
    refused(await post(replay, "/tables/t/insert", body, JSON), "int64")
    body = f'{{"keys": [{key}], "priorities": [1e400]}}'.encode()
    refused(await post(replay, "/tables/t/priorities", body, JSON), "float range")
    assert (await state(replay, "t"))[:2] == (1, 1)
    await assert_healthy(replay)


async def test_json_leaf_of_30_digits_is_422_and_cannot_poison_the_table(
    replay: ReplayClient,
) -> None:
    await replay.create_table("t", table())
    body = f'{{"items": [{{"data": {{"x": {"1" * 30}}}}}]}}'.encode()
    refused(await post(replay, "/tables/t/insert", body, JSON), "int64")
    assert (await replay.info("t"))["item_signature"] is None  # nothing fixed the signature
    await assert_healthy(replay)


async def test_signature_dtypes_come_from_the_allow_list(replay: ReplayClient) -> None:
    for dtype in [",", "i4,i4", "(2,)f4", "|O", "float32", "<U4", "V8", "<M8", 4, None]:
        config = table(signature={"x": {"dtype": dtype, "shape": []}})
        refused(await replay.request("PUT", "/tables/t", json_body=config), "not allowed")
    assert await replay.info() == []


SHAPES = [
    ([2**40], "over the limit"),
    ([2**64], "int64"),
    ([1] * 100, "at most 32"),
    ([0, 2**62], "over the limit"),
    ([2**20, 2**20], "over the limit"),
    ([2**17 + 1], "over the limit"),  # one f8 leaf just over 1 MiB
    ([-1], "ints >= 0"),
    ([1.5], "ints >= 0"),
    ([True], "ints >= 0"),
]


async def test_signature_shapes_are_bounded_by_the_body_limit(start_replay: Any) -> None:
    async with start_replay(max_body_bytes=1 << 20) as replay:
        for shape, reason in SHAPES:
            config = table(signature={"x": {"dtype": "<f8", "shape": shape}})
            refused(await replay.request("PUT", "/tables/t", json_body=config), reason)
        two = {"x": {"dtype": "<f8", "shape": [2**16]}, "y": {"dtype": "<f8", "shape": [2**16 + 1]}}
        refused(await replay.request("PUT", "/tables/t", json_body=table(signature=two)), "body")
        assert await replay.info() == []
        # an item of exactly the body limit's size is still a valid signature
        fits = table(
            signature={
                "x": {"dtype": "<i8", "shape": []},
                "y": {"dtype": "|u1", "shape": [1 << 19]},
            }
        )
        assert (await replay.request("PUT", "/tables/u", json_body=fits)).status_code == 200


HEADERS = [
    ["<f4", [2**40], b""],
    ["<f4", [2**64 - 1], b""],
    ["<f4", [1] * 100, b"\x00" * 4],
    ["<f4", [0, 2**62], b""],
    [",", [1], b"\x00"],
    ["(2,)<f4", [1], b"\x00" * 8],
    ["|O", [1], b"\x00" * 8],
]


async def test_array_headers_beyond_the_limits_are_422(replay: ReplayClient) -> None:
    await replay.create_table("t", table())
    for header in HEADERS:
        array = msgpack.ExtType(codec.ARRAY_EXT_CODE, msgpack.packb(header, use_bin_type=True))
        body = msgpack.packb({"columns": {"x": array}}, use_bin_type=True)
        response = await post(replay, "/tables/t/insert", body, MSGPACK)
        assert response.status_code == 422, (header[:2], response.content[:300])
    assert (await state(replay, "t")) == (0, 0, 0, 0)
    await assert_healthy(replay)


async def test_deep_nests_are_422_and_cannot_break_listing(replay: ReplayClient) -> None:
    await replay.create_table("t", table())
    for depth in (limits.MAX_DEPTH - 2, 500, 1000, 5000, 100_000):
        refused(await post(replay, "/tables/t/insert", deep_msgpack(depth), MSGPACK), "nested")
        refused(await post(replay, "/tables/t/insert", deep_json(depth), JSON), "nested")
    deep_signature = '{"signature": ' + '{"a": ' * 500 + '{"dtype": "<f4", "shape": []}' + "}" * 501
    response = await replay.request(
        "PUT", "/tables/u", content=deep_signature.encode(), headers=JSON
    )
    refused(response, "nested")
    await assert_healthy(replay)


async def test_the_deepest_allowed_nest_is_stored_and_listed(replay: ReplayClient) -> None:
    await replay.create_table("t", table())
    depth = limits.MAX_DEPTH - 3  # under the body's map, the items list and the item's map
    response = await post(replay, "/tables/t/insert", deep_msgpack(depth), MSGPACK)
    assert response.status_code == 200, response.content[:300]
    assert (await replay.request("GET", "/tables")).status_code == 200
    batch = await replay.sample("t", 1)
    node = batch.data
    for _ in range(depth):
        node = node["a"]
    assert node.tolist() == [1]


async def test_too_many_leaves_and_bad_keys_are_422(replay: ReplayClient) -> None:
    await replay.create_table("t", table())
    wide = {f"k{i}": i for i in range(limits.MAX_LEAVES + 1)}
    refused(
        await post(replay, "/tables/t/insert", codec.encode({"items": [{"data": wide}]}), MSGPACK),
        "leaves",
    )
    for key in ("", "a/b", "x" * 129, "tab\there"):
        body = codec.encode({"items": [{"data": {key: 1}}]})
        refused(await post(replay, "/tables/t/insert", body, MSGPACK), "map key")
    body = msgpack.packb({"items": [{"data": {b"raw": 1}}]}, use_bin_type=True)
    assert (await post(replay, "/tables/t/insert", body, MSGPACK)).status_code == 422
    await assert_healthy(replay)


async def test_table_names(replay: ReplayClient) -> None:
    for name in ["..", ".", "%2E%2E", ".hidden", "a" * 129, "a%20b", "a%2Fb", "a/b", "%00"]:
        response = await replay.request("PUT", f"/tables/{name}", json_body=table())
        assert response.status_code in (404, 405, 422), (name, response.status_code)
        assert re.fullmatch(limits.TABLE_NAME, name) is None
    assert await replay.info() == []
    assert (
        await replay.request("PUT", "/tables/ok_name.v1:x-2", json_body=table())
    ).status_code == 200


async def test_counts_are_strict_ints(replay: ReplayClient) -> None:
    for field in ({"max_size": 1000.0}, {"max_times_sampled": 1.0}, {"max_size": True}):
        refused(await replay.request("PUT", "/tables/t", json_body=table(**field)), "integer")
    limiter = {"kind": "min_size", "min_size_to_sample": 1.0}
    refused(
        await replay.request("PUT", "/tables/t", json_body=table(rate_limiter=limiter)), "integer"
    )
    assert await replay.info() == []


async def test_sample_batch_size_is_capped(start_replay: Any) -> None:
    async with start_replay(max_body_bytes=1 << 16) as replay:
        await replay.create_table("t", table())
        await replay.insert("t", data=items([1, 2]))
        for n in (1_001_000, (1 << 16) + 1):
            body = codec.encode({"batch_size": n, "timeout_ms": 0})
            refused(await post(replay, "/tables/t/sample", body, MSGPACK), "batch_size")
        body = codec.encode({"batch_size": (1 << 16) // 8 + 1, "timeout_ms": 0})  # > 64 KiB of x
        refused(await post(replay, "/tables/t/sample", body, MSGPACK), "body limit")
        assert (await state(replay, "t")) == (2, 2, 0, 0)
        assert len((await replay.sample("t", 1000)).keys) == 1000


async def test_priority_arrays_are_floats(replay: ReplayClient) -> None:
    await replay.create_table("t", table(sampler={"kind": "prioritized"}))
    (key,) = await replay.insert("t", data=items([1]))
    for dtype in (np.uint8, np.int64, np.bool_):
        body = codec.encode({"keys": [key], "priorities": np.array([3], dtype)})
        refused(await post(replay, "/tables/t/priorities", body, MSGPACK), "float array")
        body = codec.encode({"columns": items([2]), "priorities": np.array([3], dtype)})
        refused(await post(replay, "/tables/t/insert", body, MSGPACK), "float array")
    body = codec.encode({"keys": [key], "priorities": np.array([3], np.float32)})
    assert (await post(replay, "/tables/t/priorities", body, MSGPACK)).status_code == 200
    assert (await replay.info("t"))["size"] == 1


async def test_json_bodies_are_held_to_the_body_limit(start_replay: Any) -> None:
    async with start_replay(max_body_bytes=10_000) as replay:
        await replay.create_table("t", table())
        body = json.dumps({"items": [{"data": {"x": i}} for i in range(2000)]}).encode()
        response = await post(replay, "/tables/t/insert", body, JSON)
        assert response.status_code == 413 and "MAX_BODY_BYTES" in response.json()["detail"]
        big_config = json.dumps({**table(), "pad": "x" * 20_000}).encode()
        response = await replay.request("PUT", "/tables/u", content=big_config, headers=JSON)
        assert response.status_code == 413
        assert [t["name"] for t in await replay.info()] == ["t"]
