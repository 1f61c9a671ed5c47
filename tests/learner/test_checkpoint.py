"""Checkpoints: round trip of a real DQN training state, atomic writes, keep K, resume."""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import jax
import numpy as np
import pytest

from services.learner.checkpoint import (
    VERSION_LEASE,
    Checkpointer,
    CheckpointError,
    state_from_nest,
    state_to_nest,
)
from services.learner.counters import EpisodeCounters
from services.learner.logs import PrometheusMetrics
from services.learner.loop import LearnerLoop, run_updates
from services.learner.settings import LearnerSettings
from shared import codec
from shared.agents.dqn import DQNConfig, make_learner, make_network
from shared.clients import ReplayClient, make_http_client
from tests.learner.support import serve, unreachable_replay

CONFIG = DQNConfig(batch_size=8, hidden_sizes=(8,), publish_every=2)


def _batch(rng: np.random.Generator, n: int = 8) -> dict[str, np.ndarray]:
    return {
        "observation": rng.normal(size=(n, 4)).astype(np.float32),
        "action": rng.integers(0, 2, size=n).astype(np.int32),
        "reward": rng.normal(size=n).astype(np.float32),
        "discount": np.full(n, 0.99, np.float32),
        "next_observation": rng.normal(size=(n, 4)).astype(np.float32),
    }


@pytest.fixture(scope="module")
def trained() -> tuple[object, object]:
    """A learner and a state after 5 updates (Adam moments are non-zero)."""
    learner = make_learner(CONFIG, make_network(CONFIG, 2))
    state = learner.init(jax.random.PRNGKey(0), 4)
    rng = np.random.default_rng(0)
    for _ in range(5):
        state, _, _ = learner.sgd_step(state, _batch(rng))
    return learner, state


def _assert_same(a: object, b: object) -> None:
    a_leaves, a_def = jax.tree_util.tree_flatten(a)
    b_leaves, b_def = jax.tree_util.tree_flatten(b)
    assert a_def == b_def
    for x, y in zip(a_leaves, b_leaves, strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_state_round_trip_through_the_codec(trained) -> None:
    learner, state = trained
    fresh = learner.init(jax.random.PRNGKey(1), 4)
    restored = state_from_nest(fresh, codec.decode(codec.encode(state_to_nest(state))))
    _assert_same(restored, state)
    assert int(restored.step) == 5
    # the restored state trains on exactly like the original
    batch = _batch(np.random.default_rng(9))
    _assert_same(learner.sgd_step(restored, batch)[0], learner.sgd_step(state, batch)[0])


def test_run_updates_scans_k_batches_like_k_steps(trained) -> None:
    learner, state = trained
    batch = _batch(np.random.default_rng(3), n=3 * 8)
    scanned, metrics, priorities = run_updates(learner, state, batch, 3)
    stepped = state
    expected = []
    for i in range(3):
        stepped, _, p = learner.sgd_step(
            stepped, {k: v[i * 8 : (i + 1) * 8] for k, v in batch.items()}
        )
        expected.append(np.asarray(p))
    assert int(scanned.step) == int(state.step) + 3
    for a, b in zip(
        jax.tree_util.tree_leaves(scanned), jax.tree_util.tree_leaves(stepped), strict=True
    ):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(priorities, np.concatenate(expected), rtol=1e-5, atol=1e-6)
    assert set(metrics) >= {"loss", "q_mean"} and all(
        isinstance(v, float) for v in metrics.values()
    )


def test_typed_prng_keys_round_trip() -> None:
    state = {"w": np.ones(3, np.float32), "rng": jax.random.key(7)}
    template = {"w": np.zeros(3, np.float32), "rng": jax.random.key(0)}
    restored = state_from_nest(template, codec.decode(codec.encode(state_to_nest(state))))
    assert (
        jax.random.key_data(restored["rng"]).tolist() == jax.random.key_data(state["rng"]).tolist()
    )


def test_a_state_of_another_shape_is_refused(trained) -> None:
    _, state = trained
    saved = state_to_nest(state)
    for hidden, reason in (((8, 8), "state leaves"), ((9,), "float32[9]")):
        other = DQNConfig(hidden_sizes=hidden)
        init = make_learner(other, make_network(other, 2)).init
        template = jax.eval_shape(init, jax.random.PRNGKey(0), 4)  # shapes only: no compute
        with pytest.raises(CheckpointError, match="agent config") as error:
            state_from_nest(template, saved)
        assert reason in str(error.value)


def test_keeps_the_last_k(tmp_path: Path) -> None:
    checkpointer = Checkpointer(tmp_path, keep=3)
    for step in (10, 20, 30, 40, 50):
        checkpointer.save({"step": step, "x": np.arange(step)})
    assert [p.name for p in checkpointer.paths()] == [
        "ckpt-000000000030.msgpack",
        "ckpt-000000000040.msgpack",
        "ckpt-000000000050.msgpack",
    ]
    _path, latest = checkpointer.load_latest()
    assert latest["step"] == 50 and latest["x"].tolist() == list(range(50))
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]


def test_a_crash_during_a_write_leaves_the_previous_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    checkpointer = Checkpointer(tmp_path, keep=3)
    checkpointer.save({"step": 1})

    def crash(src: str, dst: str) -> None:
        raise OSError("disk gone")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk gone"):
        checkpointer.save({"step": 2})
    monkeypatch.undo()
    assert [p.name for p in checkpointer.paths()] == ["ckpt-000000000001.msgpack"]
    # the half-written temp file is cleaned up by the next start
    assert any(".tmp-" in p.name for p in tmp_path.iterdir())
    reopened = Checkpointer(tmp_path, keep=3)
    assert not any(".tmp-" in p.name for p in tmp_path.iterdir())
    assert reopened.load_latest()[1]["step"] == 1


def test_an_unreadable_checkpoint_is_a_clear_error(tmp_path: Path) -> None:
    checkpointer = Checkpointer(tmp_path, keep=3)
    path = checkpointer.save({"step": 3})
    path.write_bytes(path.read_bytes()[:5])
    with pytest.raises(CheckpointError, match="move it away"):
        checkpointer.load_latest()


def _loop(learner, state, checkpointer: Checkpointer, counters: EpisodeCounters) -> LearnerLoop:
    return LearnerLoop(
        learner=learner,
        state=state,
        agent="dqn",
        env_id="CartPole-v1",
        agent_config=CONFIG,
        tables={CONFIG.table_name: CONFIG.replay_table_config(4)},
        replay=ReplayClient(make_http_client(unreachable_replay())),
        counters=counters,
        metrics=PrometheusMetrics(),
        checkpointer=checkpointer,
    )


async def test_resume_continues_steps_versions_and_counters(trained, tmp_path: Path) -> None:
    learner, state = trained
    counters = EpisodeCounters()
    counters.report("a", 1000, [float(r) for r in range(150)], evaluation=False)
    counters.report("e", 200, [300.0], evaluation=True)
    loop = _loop(learner, state, Checkpointer(tmp_path), counters)
    loop.resume()
    assert loop.steps == 5 and loop.version == 1
    await loop.save_checkpoint()
    assert loop.last_checkpoint == {"step": 5, "path": str(Checkpointer(tmp_path).paths()[-1])}

    fresh = learner.init(jax.random.PRNGKey(42), 4)
    restarted = _loop(learner, fresh, Checkpointer(tmp_path), EpisodeCounters())
    restarted.resume()
    assert restarted.steps == 5
    _assert_same(restarted.state, state)
    assert restarted.version > loop.version  # versions only grow
    assert restarted.counters.actor_steps == 1000 and restarted.counters.episodes == 150
    assert restarted.counters.return_mean_100 == pytest.approx(np.mean(range(50, 150)))
    assert restarted.counters.eval_return_mean == 300.0
    assert codec.decode(restarted.published.body)["version"] == restarted.version


async def test_versions_grow_past_what_a_killed_learner_published(trained, tmp_path: Path) -> None:
    """Versions published after the last checkpoint are covered by the lease file."""
    learner, state = trained
    loop = _loop(learner, state, Checkpointer(tmp_path), EpisodeCounters())
    loop.resume()
    published = loop._publish_sync(state.params, VERSION_LEASE + 5)  # far past the first lease
    # no checkpoint written; the process "dies" here
    restarted = _loop(learner, state, Checkpointer(tmp_path), EpisodeCounters())
    restarted.resume()
    assert restarted.version > published.version


def test_app_restart_resumes_versions_and_counters(tmp_path: Path) -> None:
    settings = LearnerSettings(
        replay_url=unreachable_replay(),
        checkpoint_dir=tmp_path / "ckpt",
        agent_config={"hidden_sizes": [8]},
    )
    with serve(settings) as (url, _), httpx.Client(base_url=url, timeout=10) as http:
        report = {"actor_id": "a", "steps": 40, "episodes": [{"return": 9.0, "length": 40}]}
        http.post("/episodes", json=report).raise_for_status()
        first_version = http.get("/status").json()["param_version"]
    # the shutdown wrote a checkpoint
    assert len(Checkpointer(tmp_path / "ckpt").paths()) == 1
    with serve(settings) as (url, _), httpx.Client(base_url=url, timeout=10) as http:
        status = http.get("/status").json()
        assert status["param_version"] > first_version
        assert status["actor_steps"] == 40 and status["return_mean_100"] == 9.0
        assert status["checkpoint"]["step"] == 0
        assert codec.decode(http.get("/params").content)["version"] == status["param_version"]
