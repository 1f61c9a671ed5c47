"""Checkpoints: a real DQN training state by name, atomic writes, keep K, resume."""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple

import httpx
import jax
import numpy as np
import pytest

from services.experiment import build_experiment
from services.learner.checkpoint import (
    VERSION_LEASE,
    Checkpointer,
    CheckpointError,
    state_from_nest,
    state_to_nest,
)
from services.learner.counters import EpisodeCounters
from services.learner.logs import PrometheusMetrics
from services.learner.loop import LearnerLoop
from services.learner.settings import LearnerSettings
from shared import codec
from shared.clients import ReplayClient, make_http_client
from shared.interfaces import Batch
from tests.learner.support import serve, unreachable_replay

OVERRIDES = {"batch_size": 8, "hidden_sizes": [8], "publish_every": 2, "batches_per_sample": 1}
EXPERIMENT = build_experiment("dqn", "CartPole-v1", overrides=OVERRIDES)


def _batch(rng: np.random.Generator, n: int = 8) -> Batch:
    data = {
        "observation": rng.normal(size=(n, 4)).astype(np.float32),
        "action": rng.integers(0, 2, size=n).astype(np.int32),
        "reward": rng.normal(size=n).astype(np.float32),
        "discount": np.full(n, 0.99, np.float32),
        "next_observation": rng.normal(size=(n, 4)).astype(np.float32),
    }
    return Batch(data, np.ones(n, np.float32))


@pytest.fixture(scope="module")
def trained() -> tuple[object, object]:
    """A learner and a state after 5 updates (Adam moments are non-zero)."""
    learner = EXPERIMENT.agent.learner
    state = learner.init(jax.random.PRNGKey(0))
    rng = np.random.default_rng(0)
    for _ in range(5):
        state, _, _ = learner.update(state, _batch(rng))
    return learner, state


def _assert_same(a: object, b: object) -> None:
    a_leaves, a_def = jax.tree_util.tree_flatten(a)
    b_leaves, b_def = jax.tree_util.tree_flatten(b)
    assert a_def == b_def
    for x, y in zip(a_leaves, b_leaves, strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def _through_the_codec(state: object) -> dict:
    nest, _ = state_to_nest(state)
    return codec.decode(codec.encode(nest))


def test_state_round_trip_through_the_codec_by_name(trained) -> None:
    learner, state = trained
    nest = _through_the_codec(state)
    assert set(nest) == {"params", "target_params", "opt_state", "step", "rng"}
    assert nest["params"]["params"]["Dense_0"]["kernel"].shape == (4, 8)
    assert set(nest["opt_state"]["1"]["0"]) == {"count", "mu", "nu"}  # optax's Adam by name
    restored = state_from_nest(learner.init(jax.random.PRNGKey(1)), nest)
    _assert_same(restored, state)
    assert int(restored.step) == 5
    # the restored state trains on exactly like the original
    batch = _batch(np.random.default_rng(9))
    _assert_same(learner.update(restored, batch)[0], learner.update(state, batch)[0])


class Reordered(NamedTuple):
    """DQN's TrainingState with its fields in another order: restored by name, not position."""

    rng: jax.Array
    step: jax.Array
    target_params: object
    opt_state: object
    params: object


def test_parts_are_found_by_name_whatever_their_order(trained) -> None:
    _, state = trained
    template = Reordered(*(getattr(state, f) for f in Reordered._fields))
    template = jax.tree.map(np.zeros_like, template)
    restored = state_from_nest(template, _through_the_codec(state))
    _assert_same(restored.params, state.params)  # not the target network's
    _assert_same(restored.target_params, state.target_params)
    assert int(restored.step) == 5


def test_typed_prng_keys_round_trip() -> None:
    state = {"w": np.ones(3, np.float32), "rng": jax.random.key(7)}
    template = {"w": np.zeros(3, np.float32), "rng": jax.random.key(0)}
    nest, prng = state_to_nest(state)
    assert prng == ["rng"]
    restored = state_from_nest(template, codec.decode(codec.encode(nest)))
    assert (
        jax.random.key_data(restored["rng"]).tolist() == jax.random.key_data(state["rng"]).tolist()
    )


def test_a_state_of_another_shape_is_refused_naming_the_part(trained) -> None:
    _, state = trained
    saved = _through_the_codec(state)
    for hidden, reason in (((8, 8), "Dense_1/bias"), ((9,), "float32[9]")):
        other = build_experiment(
            "dqn", "CartPole-v1", overrides={**OVERRIDES, "hidden_sizes": hidden}
        )
        init = other.agent.learner.init
        template = jax.eval_shape(init, jax.random.PRNGKey(0))  # shapes only: no compute
        with pytest.raises(CheckpointError, match="agent") as error:
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


def _loop(checkpointer: Checkpointer, counters: EpisodeCounters) -> LearnerLoop:
    return LearnerLoop(
        experiment=EXPERIMENT,
        replay=ReplayClient(make_http_client(unreachable_replay())),
        counters=counters,
        metrics=PrometheusMetrics(),
        checkpointer=checkpointer,
    )


async def test_resume_continues_steps_versions_and_counters(trained, tmp_path: Path) -> None:
    _, state = trained
    counters = EpisodeCounters()
    counters.report("a", 1000, [float(r) for r in range(150)], evaluation=False)
    counters.report("e", 200, [300.0], evaluation=True)
    loop = _loop(Checkpointer(tmp_path), counters)
    loop.trainer.state, loop.trainer.steps = state, 5
    loop.resume()
    assert loop.steps == 5 and loop.version == 1
    await loop.save_checkpoint()
    path = Checkpointer(tmp_path).paths()[-1]
    assert loop.trainer.last_checkpoint == {"step": 5, "path": str(path)}
    header = codec.decode(path.read_bytes())
    assert header["agent"] == "dqn" and header["env_spec"]["action_space"]["n"] == 2
    assert header["agent_config"]["hidden_sizes"] == [8]

    restarted = _loop(Checkpointer(tmp_path), EpisodeCounters())
    restarted.resume()
    assert restarted.steps == 5
    _assert_same(restarted.trainer.state, state)
    assert restarted.version > loop.version  # versions only grow
    assert restarted.counters.actor_steps == 1000 and restarted.counters.episodes == 150
    assert restarted.counters.return_mean_100 == pytest.approx(np.mean(range(50, 150)))
    assert restarted.counters.eval_return_mean == 300.0
    assert codec.decode(restarted.published.body)["version"] == restarted.version


async def test_a_checkpoint_of_another_environment_is_refused(tmp_path: Path) -> None:
    loop = _loop(Checkpointer(tmp_path), EpisodeCounters())
    loop.resume()
    await loop.save_checkpoint()
    other = build_experiment("dqn", "Acrobot-v1", overrides=OVERRIDES)
    restarted = LearnerLoop(
        experiment=other,
        replay=ReplayClient(make_http_client(unreachable_replay())),
        counters=EpisodeCounters(),
        metrics=PrometheusMetrics(),
        checkpointer=Checkpointer(tmp_path),
    )
    with pytest.raises(CheckpointError, match="env_id='CartPole-v1'"):
        restarted.resume()


async def test_versions_grow_past_what_a_killed_learner_published(tmp_path: Path) -> None:
    """Versions published after the last checkpoint are covered by the lease file."""
    loop = _loop(Checkpointer(tmp_path), EpisodeCounters())
    loop.resume()
    loop.trainer.version = VERSION_LEASE + 4
    loop.trainer.publish()  # far past the first lease
    # no checkpoint written; the process "dies" here
    restarted = _loop(Checkpointer(tmp_path), EpisodeCounters())
    restarted.resume()
    assert restarted.version > VERSION_LEASE + 5


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
