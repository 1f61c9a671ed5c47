"""Samplers, removers, max_times_sampled, priority updates and deletes, on both backends."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from shared.clients import ReplayClient
from tests.replay.util import items, live, state, table

P_FAIL = 1e-6  # statistical tests fail by chance once in a million runs (memory: seeded, never)


async def draw_counts(client: ReplayClient, name: str, n_items: int, draws: int) -> np.ndarray:
    counts = np.zeros(n_items, np.int64)
    for _ in range(draws // 1000):
        batch = await client.sample(name, 1000)
        counts += np.bincount(batch.data["x"], minlength=n_items)
    return counts


async def test_uniform_sampler_is_uniform(replay: ReplayClient) -> None:
    await replay.create_table("t", table())
    await replay.insert("t", data=items(range(10)))
    batch = await replay.sample("t", 1000)
    np.testing.assert_allclose(batch.probabilities, 0.1)
    assert batch.table_size == 10
    counts = np.bincount(batch.data["x"], minlength=10) + await draw_counts(replay, "t", 10, 4000)
    assert stats.chisquare(counts).pvalue > P_FAIL


@pytest.mark.parametrize("exponent", [1.0, 0.5])
async def test_prioritized_sampler_follows_p_to_the_a(
    replay: ReplayClient, exponent: float
) -> None:
    await replay.create_table(
        "t", table(sampler={"kind": "prioritized", "priority_exponent": exponent})
    )
    priorities = np.array([1.0, 2.0, 3.0, 4.0, 0.5, 8.0])
    await replay.insert("t", data=items(range(6)), priorities=priorities)
    expected = priorities**exponent / (priorities**exponent).sum()
    batch = await replay.sample("t", 1000)
    np.testing.assert_allclose(batch.probabilities, expected[batch.data["x"]], rtol=1e-9)
    np.testing.assert_allclose(batch.priorities, priorities[batch.data["x"]])
    counts = await draw_counts(replay, "t", 6, 6000)
    assert stats.chisquare(counts, counts.sum() * expected).pvalue > P_FAIL


async def test_prioritized_updates_and_zero_priorities(replay: ReplayClient) -> None:
    await replay.create_table("t", table(sampler={"kind": "prioritized"}))
    keys = await replay.insert("t", data=items(range(4)), priorities=[0.0, 0.0, 0.0, 0.0])
    batch = await replay.sample("t", 400)  # all zero: uniform
    np.testing.assert_allclose(batch.probabilities, 0.25)
    assert set(batch.data["x"].tolist()) == {0, 1, 2, 3}
    result = await replay.update_priorities("t", keys=keys[:2], priorities=[0.0, 5.0])
    assert result == {"updated": 2, "deleted": 0}
    batch = await replay.sample("t", 200)
    assert set(batch.data["x"].tolist()) == {1}
    np.testing.assert_allclose(batch.probabilities, 1.0)
    np.testing.assert_allclose(batch.priorities, 5.0)


async def test_fifo_lifo_and_heap_samplers(replay: ReplayClient) -> None:
    priorities = [3.0, 1.0, 3.0, 0.5, 1.0]
    expected = {"fifo": 0, "lifo": 4, "max_heap": 0, "min_heap": 3}
    for kind, x in expected.items():
        await replay.create_table(kind, table(sampler={"kind": kind}))
        await replay.insert(kind, data=items(range(5)), priorities=priorities)
        batch = await replay.sample(kind, 3)
        assert batch.data["x"].tolist() == [x] * 3, kind
        assert batch.times_sampled.tolist() == [1, 2, 3], kind
        np.testing.assert_allclose(batch.probabilities, 1.0)
    # ties go to the oldest; updates move items in the heap
    keys = await replay.insert("min_heap", data=items([5]), priorities=[0.5])
    assert (await replay.sample("min_heap", 1)).data["x"].tolist() == [3]
    await replay.update_priorities("min_heap", keys=keys, priorities=[0.1])
    assert (await replay.sample("min_heap", 1)).data["x"].tolist() == [5]


@pytest.mark.parametrize(
    ("remover", "removed"),
    [("fifo", [0, 1]), ("lifo", [4, 3]), ("max_heap", [3, 0]), ("min_heap", [2, 1])],
)
async def test_ordered_removers(replay: ReplayClient, remover: str, removed: list[int]) -> None:
    await replay.create_table("t", table(remover={"kind": remover}, max_size=5))
    priorities = [3.0, 1.0, 0.5, 7.0, 3.0]
    keys = await replay.insert("t", data=items(range(5)), priorities=priorities)
    await replay.insert("t", data=items([5, 6]), priorities=[2.0, 2.0])
    size, inserts, _, deletes = await state(replay, "t")
    assert (size, inserts, deletes) == (5, 7, 2)
    gone = [
        x for x, alive in zip(range(5), await live(replay, "t", keys), strict=True) if not alive
    ]
    assert sorted(gone) == sorted(removed)


async def test_uniform_remover_is_uniform(replay: ReplayClient) -> None:
    await replay.create_table("t", table(remover={"kind": "uniform"}, max_size=1000))
    await replay.insert("t", data=items(range(1000)))
    await replay.insert("t", data=items(range(1000, 1500)))
    seen = np.zeros(1500, bool)
    for _ in range(20):
        seen[(await replay.sample("t", 1000)).data["x"]] = True
    assert seen[1000:].all()  # the batch itself is never evicted
    removed = ~seen[:1000]
    assert removed.sum() == 500
    per_decile = removed.reshape(10, 100).sum(axis=1)
    assert stats.chisquare(per_decile).pvalue > P_FAIL


async def test_prioritized_remover_removes_by_priority(replay: ReplayClient) -> None:
    await replay.create_table("t", table(remover={"kind": "prioritized"}, max_size=100))
    keys = await replay.insert("t", data=items(range(100)), priorities=[0.0] * 50 + [1.0] * 50)
    await replay.insert("t", data=items(range(100, 130)))
    alive = await live(replay, "t", keys)
    assert all(alive[:50]) and sum(alive[50:]) == 20


async def test_max_times_sampled(replay: ReplayClient) -> None:
    await replay.create_table("t", table(max_times_sampled=2))
    await replay.insert("t", data=items(range(3)))
    batch = await replay.sample("t", 6)  # six draws use up all three items
    assert sorted(batch.data["x"].tolist()) == [0, 0, 1, 1, 2, 2]
    for x in range(3):
        assert sorted(batch.times_sampled[batch.data["x"] == x].tolist()) == [1, 2]
    assert (await state(replay, "t")) == (0, 3, 6, 3)
    with pytest.raises(Exception) as excinfo:
        await replay.sample("t", 1, timeout_s=0)
    assert excinfo.value.status_code == 429


async def test_times_sampled_counts_repeats(replay: ReplayClient) -> None:
    await replay.create_table("t", table())
    await replay.insert("t", data=items([7]))
    batch = await replay.sample("t", 5)
    assert batch.times_sampled.tolist() == [1, 2, 3, 4, 5]
    assert (await replay.sample("t", 1)).times_sampled.tolist() == [6]


async def test_updates_and_deletes(replay: ReplayClient) -> None:
    await replay.create_table("t", table(sampler={"kind": "max_heap"}))
    keys = await replay.insert("t", data=items(range(4)), priorities=[1.0, 2.0, 3.0, 4.0])
    unknown = max(keys) + 12345
    result = await replay.update_priorities(
        "t", keys=[keys[0], unknown], priorities=[9.0, 1.0], deletes=[keys[3], unknown]
    )
    assert result == {"updated": 1, "deleted": 1}
    batch = await replay.sample("t", 1)
    assert batch.data["x"].tolist() == [0] and batch.priorities.tolist() == [9.0]
    assert (await state(replay, "t")) == (3, 4, 1, 1)
    # deleting again is a no-op; JSON bodies work too
    response = await replay.request(
        "POST",
        "/tables/t/priorities",
        json_body={"keys": [keys[1]], "priorities": [0.5], "deletes": [keys[3]]},
    )
    assert response.status_code == 200
    assert response.json() == {"updated": 1, "deleted": 0}


async def test_queue_and_stack_order(replay: ReplayClient) -> None:
    for kind, order in (("queue", "fifo"), ("stack", "lifo")):
        await replay.create_table(
            kind,
            table(
                sampler={"kind": order},
                remover={"kind": order},
                max_times_sampled=1,
                max_size=10,
                rate_limiter={"kind": kind, "size": 10},
            ),
        )
        await replay.insert(kind, data=items(range(4)))
        await replay.insert(kind, data=items(range(4, 6)))
        got = (await replay.sample(kind, 6)).data["x"].tolist()
        assert got == (list(range(6)) if kind == "queue" else list(range(5, -1, -1)))
        assert (await state(replay, kind)) == (0, 6, 6, 6)
