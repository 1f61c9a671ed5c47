"""The replay HTTP API: tables, item forms, signatures, reset, auth, health, metrics, bad input."""

from __future__ import annotations

import msgpack
import numpy as np
import pytest

from shared import codec
from shared.clients import ReplayClient
from shared.errors import Conflict, InvalidRequest, NotFound
from tests.replay.conftest import StartReplay
from tests.replay.util import items, state, table

SIGNED = table(
    signature={
        "obs": {"dtype": "<f4", "shape": [4]},
        "action": {"dtype": "<i8", "shape": []},
        "extras": [{"dtype": "|b1", "shape": [2]}],
    }
)


def signed_batch(n: int) -> dict:
    return {
        "obs": np.arange(4 * n, dtype=np.float32).reshape(n, 4),
        "action": np.arange(n, dtype=np.int64),
        "extras": [np.ones((n, 2), bool)],
    }


async def test_create_is_idempotent_and_conflicts(replay: ReplayClient) -> None:
    created = await replay.create_table("t", SIGNED)
    assert created["created"] is True and created["signature"] == SIGNED["signature"]
    again = await replay.create_table("t", SIGNED)
    assert again["created"] is False
    with pytest.raises(Conflict):
        await replay.create_table("t", {**SIGNED, "max_size": 7})
    infos = await replay.info()
    assert [i["name"] for i in infos] == ["t"]
    info = infos[0]
    for field in ("size", "num_inserts", "num_samples", "num_deletes", "max_times_sampled"):
        assert info[field] == 0
    assert set(info["rate_limiter"]) >= {
        "min_diff",
        "max_diff",
        "inserts",
        "samples",
        "deletes",
        "waiting_inserts",
        "waiting_samples",
    }


@pytest.mark.parametrize(
    ("config", "reason"),
    [
        (
            table(
                rate_limiter={
                    "kind": "sample_to_insert_ratio",
                    "samples_per_insert": 4.0,
                    "min_size_to_sample": 10,
                    "error_buffer": 2.0,
                }
            ),
            "deadlock",
        ),
        (table(max_size=0), "max_size"),
        (table(sampler={"kind": "nope"}), "sampler"),
        (table(rate_limiter={"kind": "queue", "size": 5}), "queue"),
        (table(signature={"x": {"dtype": "|O", "shape": []}}), "dtype"),
    ],
)
async def test_invalid_configs_are_422(replay: ReplayClient, config: dict, reason: str) -> None:
    response = await replay.request("PUT", "/tables/t", json_body=config)
    assert response.status_code == 422
    assert reason in response.json()["detail"]
    assert (await replay.request("GET", "/tables/t")).status_code == 404


async def test_signature_round_trip_and_both_insert_forms(replay: ReplayClient) -> None:
    await replay.create_table("t", SIGNED)
    keys = await replay.insert("t", data=signed_batch(3), priorities=[1.0, 2.0, 3.0])
    assert len(keys) == len(set(keys)) == 3
    keys += await replay.insert_items(
        "t",
        [
            {
                "data": {
                    "obs": np.full(4, 9, np.float32),
                    "action": 7,
                    "extras": [np.zeros(2, bool)],
                },
                "priority": 0.5,
            }
        ],
    )
    batch = await replay.sample("t", 64)
    assert set(batch.data) == {"obs", "action", "extras"}
    assert batch.data["obs"].dtype == np.float32 and batch.data["obs"].shape == (64, 4)
    assert batch.data["action"].dtype == np.int64 and isinstance(batch.data["extras"], list)
    by_key = dict(zip(batch.keys.tolist(), batch.data["action"].tolist(), strict=True))
    assert set(by_key) <= set(keys)
    for key, action in by_key.items():
        assert action == [0, 1, 2, 7][keys.index(key)]
        row = batch.data["obs"][batch.keys.tolist().index(key)]
        expected = np.full(4, 9.0) if action == 7 else np.arange(4 * action, 4 * action + 4)
        np.testing.assert_array_equal(row, expected)


async def test_inferred_signature_is_fixed_until_reset(replay: ReplayClient) -> None:
    await replay.create_table("t", table())
    await replay.insert("t", data={"a": np.zeros((2, 3), np.float32)})
    info = await replay.info("t")
    assert info["item_signature"] == {"a": {"dtype": "<f4", "shape": [3]}}
    for bad in (
        {"a": np.zeros((2, 3), np.float64)},
        {"a": np.zeros((2, 4), np.float32)},
        {"b": np.zeros(2)},
    ):
        with pytest.raises(InvalidRequest):
            await replay.insert("t", data=bad)
    await replay.sample("t", 3)
    await replay.reset("t")
    assert await state(replay, "t") == (0, 0, 0, 0)
    rl = (await replay.info("t"))["rate_limiter"]
    assert (rl["inserts"], rl["samples"], rl["deletes"]) == (0, 0, 0)
    await replay.insert("t", data={"b": np.zeros((1, 2), np.int8)})
    assert (await replay.sample("t", 1)).data["b"].dtype == np.int8


async def test_keys_are_not_reused_after_reset(replay: ReplayClient) -> None:
    await replay.create_table("t", table(max_size=4))
    first = await replay.insert("t", data=items(range(4)))
    await replay.reset("t")
    second = await replay.insert("t", data=items(range(4)))
    assert not set(first) & set(second)
    assert (await replay.update_priorities("t", keys=first, priorities=[1.0] * 4))["updated"] == 0


def array_ext(dtype: str, shape: list[int], data: bytes, code: int = 1) -> msgpack.ExtType:
    return msgpack.ExtType(code, msgpack.packb([dtype, shape, data], use_bin_type=True))


def insert_body(x: object, priorities: object = None) -> bytes:
    body = {"columns": {"x": x}, "timeout_ms": 0}
    if priorities is not None:
        body["priorities"] = priorities
    return msgpack.packb(body, use_bin_type=True)


GOOD_X = array_ext("<i8", [2], np.arange(2, dtype=np.int64).tobytes())
BAD_BODIES = {
    "malformed msgpack": b"\xc1\x00\x01",
    "truncated msgpack": insert_body(GOOD_X)[:-3],
    "unknown ext code": insert_body(array_ext("<i8", [2], bytes(16), code=7)),
    "object dtype": insert_body(array_ext("|O", [2], bytes(16))),
    "complex dtype": insert_body(array_ext("<c16", [1], bytes(16))),
    "byte length mismatch": insert_body(array_ext("<i8", [2], bytes(15))),
    "wrong dtype": insert_body(array_ext("<i4", [2], bytes(8))),
    "wrong shape": insert_body(array_ext("<i8", [2, 1], bytes(16))),
    "no batch axis": insert_body(array_ext("<i8", [], bytes(8))),
    "NaN priority": insert_body(GOOD_X, [1.0, float("nan")]),
    "negative priority": insert_body(GOOD_X, [1.0, -1.0]),
    "infinite priority": insert_body(GOOD_X, [float("inf"), 1.0]),
    "priority count": insert_body(GOOD_X, [1.0]),
    "string leaf": msgpack.packb({"items": [{"data": {"x": "hello"}}]}),
    "items not a list": msgpack.packb({"items": 3}),
    "no items": msgpack.packb({"timeout_ms": 0}),
    "not a map": msgpack.packb([1, 2, 3]),
    "too many for max_size": insert_body(array_ext("<i8", [11], bytes(88))),
}


async def test_bad_inserts_are_refused_and_change_nothing(replay: ReplayClient) -> None:
    await replay.create_table(
        "t", table(max_size=10, signature={"x": {"dtype": "<i8", "shape": []}})
    )
    await replay.insert("t", data=items([1, 2]))
    before = await replay.info("t")
    for what, body in BAD_BODIES.items():
        response = await replay.request(
            "POST", "/tables/t/insert", content=body, headers={"Content-Type": codec.CONTENT_TYPE}
        )
        assert response.status_code == 422, (what, response.text)
        assert isinstance(response.json()["detail"], str), what
    assert await replay.info("t") == before


async def test_bad_samples_and_updates_are_refused(replay: ReplayClient) -> None:
    await replay.create_table("t", table(max_times_sampled=1, max_size=5))
    keys = await replay.insert("t", data=items(range(3)))
    before = await replay.info("t")
    for body in (
        {"batch_size": 0},
        {"batch_size": "x"},
        {"batch_size": 6},
        {"batch_size": 1, "timeout_ms": -1},
    ):
        response = await replay.request(
            "POST",
            "/tables/t/sample",
            content=codec.encode(body),
            headers={"Content-Type": codec.CONTENT_TYPE},
        )
        assert response.status_code == 422, body
    for body in (
        {"keys": keys[:1], "priorities": [float("nan")]},
        {"keys": keys[:1], "priorities": [-0.5]},
        {"keys": keys[:2], "priorities": [1.0]},
        {"keys": ["a"], "priorities": [1.0]},
    ):
        response = await replay.request(
            "POST",
            "/tables/t/priorities",
            content=codec.encode(body),
            headers={"Content-Type": codec.CONTENT_TYPE},
        )
        assert response.status_code == 422, body
    assert await replay.info("t") == before


async def test_unknown_table_is_404(replay: ReplayClient) -> None:
    with pytest.raises(NotFound):
        await replay.info("nope")
    with pytest.raises(NotFound):
        await replay.insert("nope", data=items([1]))
    with pytest.raises(NotFound):
        await replay.sample("nope", 1)
    with pytest.raises(NotFound):
        await replay.update_priorities("nope", keys=[1], priorities=[1.0])
    with pytest.raises(NotFound):
        await replay.reset("nope")


async def test_oversized_bodies_are_413(start_replay: StartReplay) -> None:
    async with start_replay(max_body_bytes=100_000) as replay:
        await replay.create_table("t", table())
        big = {"x": np.zeros(20_000, np.int64)}  # 160 kB
        response = await replay.request(
            "POST",
            "/tables/t/insert",
            content=codec.encode({"columns": big}),
            headers={"Content-Type": codec.CONTENT_TYPE},
        )
        assert response.status_code == 413 and "MAX_BODY_BYTES" in response.json()["detail"]

        async def chunks():  # no Content-Length: the limit is enforced while reading
            payload = codec.encode({"columns": big})
            for i in range(0, len(payload), 16_384):
                yield payload[i : i + 16_384]

        response = await replay.request(
            "POST",
            "/tables/t/insert",
            content=chunks(),
            headers={"Content-Type": codec.CONTENT_TYPE},
        )
        assert response.status_code == 413
        assert await state(replay, "t") == (0, 0, 0, 0)
        await replay.insert("t", data={"x": np.zeros(1000, np.int64)})  # under the limit
        assert (await replay.info("t"))["size"] == 1000


async def test_token_auth(start_replay: StartReplay) -> None:
    async with start_replay(rlfleet_token="s3cret") as replay:
        await replay.create_table("t", table())
        assert (await replay.request("GET", "/status")).status_code == 200
        for wrong in ({}, {"Authorization": "Bearer nope"}):
            for method, url in (
                ("GET", "/tables"),
                ("GET", "/tables/t"),
                ("PUT", "/tables/u"),
                ("POST", "/tables/t/insert"),
                ("POST", "/tables/t/sample"),
                ("POST", "/tables/t/priorities"),
                ("POST", "/tables/t/reset"),
                ("GET", "/status"),
            ):
                headers = {"Authorization": "", **wrong}
                response = await replay.request(method, url, headers=headers)
                assert response.status_code == 401, (method, url)
                assert "token" in response.json()["detail"]
        for open_path in ("/healthz", "/metrics"):
            response = await replay.request("GET", open_path, headers={"Authorization": ""})
            assert response.status_code == 200
        assert [i["name"] for i in await replay.info()] == ["t"]


async def test_health_status_metrics(replay: ReplayClient) -> None:
    assert (await replay.request("GET", "/healthz")).json() == {"status": "ok"}
    await replay.create_table("t", table())
    await replay.insert("t", data=items(range(5)))
    await replay.sample("t", 3)
    status = await replay.status()
    assert status["service"] == "replay"
    assert status["tables"]["t"]["size"] == 5 and status["tables"]["t"]["num_samples"] == 3
    text = (await replay.request("GET", "/metrics")).text
    assert 'rlfleet_replay_inserted_items_total{table="t"} 5.0' in text
    assert 'rlfleet_replay_sampled_items_total{table="t"} 3.0' in text
    assert 'rlfleet_replay_table_size{table="t"} 5.0' in text
    assert "rlfleet_replay_request_seconds_bucket" in text
    assert (await replay.request("GET", "/openapi.json")).status_code == 200
