"""The DQN loss, learner and policy, checked numerically on tiny hand-set networks."""

from __future__ import annotations

import os

os.environ.setdefault(
    "XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
)

import functools

import jax
import jax.numpy as jnp
import numpy as np

from shared.agents import dqn
from shared.agents.dqn import (
    DQNConfig,
    importance_weights,
    init_params,
    make_learner,
    make_network,
    make_policy,
)
from shared.interfaces import Batch, Placement

GAMMA = 0.9
double_dqn_loss = jax.jit(
    functools.partial(dqn.double_dqn_loss, huber_delta=1.0),
    static_argnums=0,
    static_argnames="importance_sampling_exponent",
)
LINEAR = DQNConfig(hidden_sizes=(), huber_delta=1.0)  # Q(s) = s @ kernel + bias


def linear_params(kernel: list[list[float]]) -> dict:
    kernel = jnp.asarray(kernel, jnp.float32)
    return {"params": {"Dense_0": {"kernel": kernel, "bias": jnp.zeros(kernel.shape[1])}}}


ONLINE = linear_params([[1.0, 0.0], [0.0, 1.0]])  # Q_online(s) = (s0, s1)
TARGET = linear_params([[2.0, 0.0], [0.0, 3.0]])  # Q_target(s) = (2 s0, 3 s1)


def hand_batch() -> dict[str, np.ndarray]:
    rewards = [1.0, 0.5, 2.0]  # r_t, r_t+1, r_t+2 of a 3-step item
    return {
        "observation": np.array([[0.5, 0.25], [0.2, 0.1]], np.float32),
        "action": np.array([1, 0], np.int32),
        "reward": np.array([sum(GAMMA**k * r for k, r in enumerate(rewards)), 0.3], np.float32),
        "discount": np.array([GAMMA**3, 0.0], np.float32),  # item 2 terminated
        "next_observation": np.array([[1.0, 0.9], [5.0, 5.0]], np.float32),
    }


def test_double_dqn_n_step_target_by_hand() -> None:
    network = make_network(LINEAR, num_actions=2)
    loss, (abs_td, metrics) = double_dqn_loss(
        network, ONLINE, TARGET, hand_batch(), importance_sampling_exponent=0.5
    )
    # Item 1: online argmax at s' = (1, 0.9) is action 0, so the target net's value is 2 * 1 = 2
    # (a vanilla max over the target net would take 3 * 0.9 = 2.7).
    n_step_return = 1.0 + GAMMA * 0.5 + GAMMA**2 * 2.0
    td1 = n_step_return + GAMMA**3 * 2.0 - 0.25  # Q_online(s, a=1) = 0.25
    td2 = 0.3 - 0.2  # terminal: no bootstrap
    np.testing.assert_allclose(abs_td, [td1, td2], rtol=1e-6)
    huber = [td1 - 0.5, 0.5 * td2**2]  # |td1| > delta: linear; |td2| < delta: quadratic
    np.testing.assert_allclose(loss, np.mean(huber), rtol=1e-6)
    np.testing.assert_allclose(metrics["q_mean"], (0.25 + 0.2) / 2, rtol=1e-6)


def test_importance_weights() -> None:
    weights = importance_weights(jnp.array([0.1, 0.2, 0.4]), exponent=0.5)
    np.testing.assert_allclose(weights, [1.0, 0.5**0.5, 0.5], rtol=1e-5)
    network = make_network(LINEAR, num_actions=2)
    batch = hand_batch()
    plain, (abs_td, _) = double_dqn_loss(
        network, ONLINE, TARGET, batch, importance_sampling_exponent=1.0
    )
    weighted, _ = double_dqn_loss(
        network,
        ONLINE,
        TARGET,
        batch | {"probabilities": np.array([0.2, 0.4])},  # weights (1, 0.5)
        importance_sampling_exponent=1.0,
    )
    td1, td2 = np.asarray(abs_td)
    np.testing.assert_allclose(weighted, ((td1 - 0.5) + 0.5 * 0.5 * td2**2) / 2, rtol=1e-6)
    assert weighted < plain


def random_batch(rng: np.random.Generator, size: int, obs_dim: int = 4) -> dict[str, np.ndarray]:
    return {
        "observation": rng.normal(size=(size, obs_dim)).astype(np.float32),
        "action": rng.integers(0, 2, size).astype(np.int32),
        "reward": rng.normal(size=size).astype(np.float32),
        "discount": (rng.random(size) < 0.9).astype(np.float32) * 0.97,
        "next_observation": rng.normal(size=(size, obs_dim)).astype(np.float32),
    }


def _learner(config: DQNConfig, obs_dim: int = 4):
    return make_learner(config, make_network(config, num_actions=2), obs_dim)


def _batch(data: dict[str, np.ndarray]) -> Batch:
    return Batch(data, np.ones(len(data["action"]), np.float32))


def test_periodic_target_copy() -> None:
    config = DQNConfig(
        hidden_sizes=(8,),
        tau=0.0,
        target_update_period=3,
        priority_eps=0.01,
        batch_size=16,
        prioritized=True,
    )
    learner = _learner(config)
    state = learner.init(jax.random.PRNGKey(0))
    initial = state.params
    batch = _batch(random_batch(np.random.default_rng(0), 16))
    for step in (1, 2, 3):
        state, _, priorities = learner.update(state, batch)
        expected = state.params if step == 3 else initial
        jax.tree.map(np.testing.assert_array_equal, state.target_params, expected)
        assert not np.array_equal(
            state.params["params"]["Dense_0"]["kernel"], initial["params"]["Dense_0"]["kernel"]
        )
    assert int(state.step) == 3
    assert priorities.shape == (16,) and float(priorities.min()) >= 0.01
    assert learner.params(state) is state.params  # what /params publishes: the online net
    # without prioritized replay the update returns no priorities
    plain = _learner(DQNConfig(hidden_sizes=(8,), batch_size=16))
    assert plain.update(plain.init(jax.random.PRNGKey(0)), batch)[2] is None


def test_polyak_target_update() -> None:
    config = DQNConfig(hidden_sizes=(8,), tau=0.1, batch_size=16)
    learner = _learner(config)
    state = learner.init(jax.random.PRNGKey(0))
    old_target = state.target_params
    state, _, _ = learner.update(state, _batch(random_batch(np.random.default_rng(0), 16)))
    expected = jax.tree.map(lambda p, t: 0.1 * p + 0.9 * t, state.params, old_target)
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7),
        state.target_params,
        expected,
    )


def test_one_update_of_k_batches_equals_k_updates_of_one_and_reduces_loss() -> None:
    # a fixed target: a regression that the steps must fit
    config = DQNConfig(
        hidden_sizes=(32,), learning_rate=3e-3, tau=0.0, target_update_period=1000, batch_size=32,
        prioritized=True,
    )  # fmt: skip
    learner = _learner(config)
    state = learner.init(jax.random.PRNGKey(1))
    batch = random_batch(np.random.default_rng(1), 32)
    stacked = jax.tree.map(lambda x: np.concatenate([x] * 100), batch)

    one_by_one = state
    for _ in range(100):
        one_by_one, _, _ = learner.update(one_by_one, _batch(batch))
    scanned, metrics, priorities = learner.update(state, _batch(stacked))
    assert priorities.shape == (100 * 32,)
    assert int(scanned.step) == 100
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5),
        scanned.params,
        one_by_one.params,
    )
    _, first, _ = learner.update(state, _batch(batch))
    _, last, _ = learner.update(scanned, _batch(batch))
    assert float(last["loss"]) < 0.6 * float(first["loss"])
    assert set(metrics) >= {"loss", "q_mean", "grad_norm"}


def test_policies() -> None:
    network = make_network(LINEAR, num_actions=2)
    obs = np.array([[1.0, 0.0], [0.0, 1.0]] * 500, np.float32)  # best actions alternate 0, 1
    best = np.array([0, 1] * 500)
    first = np.zeros(1000, bool)
    greedy = make_policy(network, DQNConfig(evaluation_epsilon=0.0), evaluation=True)
    state = greedy.init(jax.random.PRNGKey(0), Placement(1000))
    actions, _, _ = greedy.step(ONLINE, state, obs, first)
    assert actions.dtype == jnp.int32 and actions.shape == (1000,)
    np.testing.assert_array_equal(actions, best)
    config = DQNConfig(ape_x_spread=True, ape_x_base=1.0, ape_x_alpha=0.0)  # epsilon 1 for all
    explore = make_policy(network, config)
    state = explore.init(jax.random.PRNGKey(0), Placement(1000))
    mixed, _, next_state = explore.step(ONLINE, state, obs, first)
    mixed = np.asarray(mixed)
    # epsilon 1 acts uniformly: about half the random actions miss the greedy one
    assert 0.4 < np.mean(mixed != best) < 0.6
    assert mixed.dtype == np.int32
    again, _, _ = explore.step(ONLINE, next_state, obs, first)
    assert not np.array_equal(np.asarray(again), mixed)  # the key moved on


def test_network_shapes() -> None:
    network = make_network(DQNConfig(hidden_sizes=(16, 8)), num_actions=5)
    params = init_params(network, jax.random.PRNGKey(0), obs_dim=3)
    shapes = jax.tree.map(jnp.shape, params["params"])
    assert shapes["Dense_0"]["kernel"] == (3, 16) and shapes["Dense_2"]["kernel"] == (8, 5)
    assert jax.jit(network.apply)(params, jnp.zeros((7, 3))).shape == (7, 5)
