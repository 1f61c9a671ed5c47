"""SAC's and TD3's targets, the tanh log-prob correction and the action bounds, by hand."""

from __future__ import annotations

import os

os.environ.setdefault(
    "XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
)

import math

import gymnasium
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from shared.agents import sac, td3
from shared.agents.continuous import ActionBounds, box_spaces
from shared.interfaces import Batch, EnvSpec, Placement, UnsupportedEnvironment

LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)  # 0.9189385...
SMALL = {"hidden_sizes": (8,), "batch_size": 4, "min_replay_size": 4}


def pendulum_like(low=(-2.0, 0.0), high=(2.0, 1.0)) -> EnvSpec:
    actions = gymnasium.spaces.Box(np.array(low, np.float32), np.array(high, np.float32))
    observations = gymnasium.spaces.Box(-np.inf, np.inf, (3,), np.float32)
    return EnvSpec("Test-v0", observations, actions)


@pytest.fixture(scope="module", params=[sac, td3], ids=["sac", "td3"])
def built(request):
    """(agent, its initial training state) on a 2-d box, built and initialized once."""
    agent = request.param.make_agent(request.param.Config(**SMALL, random_steps=2), pendulum_like())
    return agent, agent.learner.init(jax.random.PRNGKey(0))


# ---- action bounds ------------------------------------------------------------------------------


def test_actions_are_rescaled_between_minus_one_one_and_the_env_bounds() -> None:
    _, bounds = box_spaces(pendulum_like(), "sac")
    np.testing.assert_allclose(bounds.to_env(np.array([-1.0, -1.0])), [-2.0, 0.0])
    np.testing.assert_allclose(bounds.to_env(np.array([1.0, 1.0])), [2.0, 1.0])
    np.testing.assert_allclose(bounds.to_env(np.array([0.0, 0.0])), [0.0, 0.5])
    np.testing.assert_allclose(bounds.to_env(np.array([0.5, -0.5])), [1.0, 0.25])
    for env_action in ([-2.0, 0.0], [2.0, 1.0], [1.0, 0.25]):
        back = bounds.to_env(bounds.to_policy(np.array(env_action, np.float32)))
        np.testing.assert_allclose(back, env_action, atol=1e-6)
    np.testing.assert_allclose(bounds.to_policy(np.array([2.0, 0.0])), [1.0, -1.0])


def test_spaces_that_cannot_be_squashed_are_refused_with_the_reason() -> None:
    obs = gymnasium.spaces.Box(-1, 1, (3,))
    with pytest.raises(UnsupportedEnvironment, match="sac needs a 1-d Box action space"):
        box_spaces(EnvSpec("D-v0", obs, gymnasium.spaces.Discrete(2)), "sac")
    unbounded = gymnasium.spaces.Box(-np.inf, np.inf, (2,))
    with pytest.raises(UnsupportedEnvironment, match="td3 needs finite action bounds"):
        box_spaces(EnvSpec("U-v0", obs, unbounded), "td3")
    image = gymnasium.spaces.Box(0, 1, (2, 2))
    with pytest.raises(UnsupportedEnvironment, match="flat"):
        box_spaces(EnvSpec("I-v0", image, gymnasium.spaces.Box(-1, 1, (1,))), "sac")


def test_both_policies_act_within_the_bounds_whatever_the_observation(built) -> None:
    spec = pendulum_like()
    agent, state = built
    params = jax.tree.map(lambda p: 50.0 * p, agent.learner.params(state))  # saturate the tanh
    obs = np.array([[1e3, -1e3, 0.0], [-1e4, 1e4, 5.0], [0.0, 0.0, 0.0]], np.float32)
    low, high = spec.action_space.low, spec.action_space.high
    for policy in (agent.policy, agent.evaluation_policy):
        state = policy.init(jax.random.PRNGKey(1), Placement(3))
        for _ in range(3):  # the random start, then the policy itself
            action, extras, state = policy.step(params, state, obs, np.zeros(3, bool))
            action = np.asarray(action)
            assert action.shape == (3, 2) and action.dtype == np.float32 and extras == {}
            assert np.all(action >= low) and np.all(action <= high), action
    # a resumed run's actor (fleet steps past random_steps) skips the random start
    resumed = agent.policy.init(jax.random.PRNGKey(1), Placement(3, 0, 1, fleet_steps=100))
    fresh = agent.policy.init(jax.random.PRNGKey(1), Placement(3))
    assert int(resumed.steps) == 2 and int(fresh.steps) == 0


def test_the_table_holds_float_action_vectors_and_params_are_the_policy_only(built) -> None:
    agent, state = built
    (table,) = agent.tables.values()
    assert table["signature"]["action"] == {"dtype": "<f4", "shape": [2]}
    assert table["rate_limiter"]["samples_per_insert"] == 4.0  # 1 update per step * batch 4
    assert agent.learner.params(state) is state.policy_params


def test_the_twin_critics_are_two_independent_networks_in_one(built) -> None:
    _, state = built
    kernel = state.critic_params["params"]["critics"]["Dense_0"]["kernel"]
    assert kernel.shape == (2, 3 + 2, 8)  # (critic, obs_dim + action_dim, hidden)
    assert not np.allclose(kernel[0], kernel[1])  # each initialized on its own


# ---- SAC ----------------------------------------------------------------------------------------


def test_sac_soft_bellman_target_with_the_entropy_term_by_hand() -> None:
    target = sac.soft_bellman_target(
        reward=jnp.array([1.0, 0.5]),
        discount=jnp.array([0.99, 0.0]),  # the second item terminated
        next_q=jnp.array([[2.0, 3.0], [1.5, 4.0]]),  # (critic, batch): min = (1.5, 3.0)
        next_log_prob=jnp.array([-0.5, 0.2]),
        alpha=jnp.float32(0.1),
    )
    # 1 + 0.99 * (1.5 - 0.1 * -0.5) = 1 + 0.99 * 1.55; 0.5 + 0 * (3.0 - 0.02)
    np.testing.assert_allclose(target, [2.5345, 0.5], rtol=1e-6)


@jax.jit
def log_prob(mean: jax.Array, log_std: jax.Array, action: jax.Array) -> jax.Array:
    return sac.tanh_gaussian(mean, log_std).log_prob(action)


def test_the_tanh_log_prob_correction_by_hand() -> None:
    zeros = jnp.zeros((1, 2))
    # at u = 0 the correction log(1 - tanh(0)^2) is 0: two standard normal densities at 0
    np.testing.assert_allclose(log_prob(zeros, zeros, zeros), [-2 * LOG_SQRT_2PI], rtol=1e-6)
    # u = (0.5, -1) with mean (0.25, 0), std (0.5, 2): a = tanh(u)
    mean, log_std = jnp.array([[0.25, 0.0]]), jnp.log(jnp.array([[0.5, 2.0]]))
    u = np.array([0.5, -1.0])
    gauss = [-0.5 * ((0.5 - 0.25) / 0.5) ** 2 - math.log(0.5), -0.5 * (1 / 2) ** 2 - math.log(2)]
    by_hand = sum(gauss) - 2 * LOG_SQRT_2PI - sum(math.log(1 - math.tanh(x) ** 2) for x in u)
    at_u = log_prob(mean, log_std, jnp.tanh(u)[None])
    np.testing.assert_allclose(at_u, [by_hand], rtol=1e-5)
    # a sample's log-prob is the same formula at its own pre-tanh value
    action, sampled = jax.jit(sac.sample_action)(mean, log_std, jax.random.PRNGKey(3))
    u = np.arctanh(np.asarray(action[0], np.float64))
    z = (u - np.array([0.25, 0.0])) / np.array([0.5, 2.0])
    by_hand = np.sum(-0.5 * z**2 - np.log([0.5, 2.0]) - LOG_SQRT_2PI - np.log(1 - np.tanh(u) ** 2))
    np.testing.assert_allclose(sampled, [by_hand], rtol=1e-4)


def test_sac_alpha_rises_when_the_entropy_is_below_its_target() -> None:
    log_alpha = jnp.float32(0.0)
    grad = jax.grad(sac.alpha_loss)(log_alpha, jnp.array([2.0, 2.0]), -1.0)  # entropy -2 < -1
    assert grad < 0  # gradient descent raises log(alpha)
    grad = jax.grad(sac.alpha_loss)(log_alpha, jnp.array([-3.0, -3.0]), -1.0)  # entropy 3 > -1
    assert grad > 0
    np.testing.assert_allclose(
        sac.policy_loss(jnp.array([[1.0], [3.0]]), jnp.array([2.0]), 0.5), 0.0
    )


def test_one_sac_update_fits_the_critic_and_tunes_alpha() -> None:
    built = sac.make_agent(sac.Config(**SMALL, critic_learning_rate=1e-2), pendulum_like())
    state = built.learner.init(jax.random.PRNGKey(0))
    rng = np.random.default_rng(0)
    n = 4 * 3  # three batches in one request: one scan
    data = {
        "observation": rng.normal(size=(n, 3)).astype(np.float32),
        "action": rng.uniform([-2, 0], [2, 1], (n, 2)).astype(np.float32),
        "reward": np.ones(n, np.float32),
        "discount": np.zeros(n, np.float32),  # terminal: the target is the reward
        "next_observation": rng.normal(size=(n, 3)).astype(np.float32),
    }
    losses = []
    for _ in range(20):
        state, metrics, priorities = built.learner.update(state, Batch(data, np.ones(n)))
        losses.append(float(metrics["critic_loss"]))
    assert priorities is None and int(state.step) == 60
    assert losses[-1] < 0.5 * losses[0]
    assert float(metrics["alpha"]) != 1.0 and np.isfinite(float(metrics["entropy"]))
    moved = jax.tree.map(
        lambda a, b: bool(jnp.any(a != b)), state.critic_params, state.target_critic_params
    )
    assert all(jax.tree.leaves(moved))  # Polyak: the target trails the critic


# ---- TD3 ----------------------------------------------------------------------------------------


def test_td3_smoothed_clipped_double_q_target_by_hand() -> None:
    action = td3.smoothed_target_action(
        jnp.array([[0.9], [-0.2]]), noise=jnp.array([[0.8], [-0.1]]), noise_clip=0.5
    )
    np.testing.assert_allclose(action, [[1.0], [-0.3]], rtol=1e-6)  # 0.9 + 0.5 clipped to 1
    target = td3.clipped_double_q_target(
        reward=jnp.array([1.0, 2.0]),
        discount=jnp.array([0.5, 0.0]),
        next_q=jnp.array([[3.0, 1.0], [2.0, 5.0]]),  # min over critics: (2, 1)
    )
    np.testing.assert_allclose(target, [2.0, 2.0], rtol=1e-6)


def test_td3_updates_the_policy_and_targets_every_policy_delay_steps() -> None:
    built = td3.make_agent(td3.Config(**SMALL, policy_delay=2), pendulum_like())
    state = built.learner.init(jax.random.PRNGKey(0))
    rng = np.random.default_rng(0)
    data = {
        "observation": rng.normal(size=(4, 3)).astype(np.float32),
        "action": rng.uniform([-2, 0], [2, 1], (4, 2)).astype(np.float32),
        "reward": np.ones(4, np.float32),
        "discount": np.full(4, 0.99, np.float32),
        "next_observation": rng.normal(size=(4, 3)).astype(np.float32),
    }

    def same(a, b) -> bool:
        return all(jax.tree.leaves(jax.tree.map(lambda x, y: bool(jnp.all(x == y)), a, b)))

    one, _, _ = built.learner.update(state, Batch(data, np.ones(4)))  # step 1: critic only
    assert not same(one.critic_params, state.critic_params)
    assert same(one.policy_params, state.policy_params)
    assert same(one.target_critic_params, state.target_critic_params)
    two, metrics, _ = built.learner.update(one, Batch(data, np.ones(4)))  # step 2: the policy too
    assert not same(two.policy_params, one.policy_params)
    assert not same(two.target_policy_params, one.target_policy_params)
    assert not same(two.target_critic_params, one.target_critic_params)
    assert np.isfinite(float(metrics["policy_loss"]))


def test_bounds_of_a_bigger_box_round_trip() -> None:
    bounds = ActionBounds(np.full(6, -1.0, np.float32), np.full(6, 1.0, np.float32))
    x = np.linspace(-1, 1, 6, dtype=np.float32)
    np.testing.assert_allclose(bounds.to_env(x), x, atol=1e-6)  # MuJoCo's [-1, 1]: the identity
