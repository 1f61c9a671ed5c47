"""IMPALA's V-trace and PPO's GAE against values computed by hand, on items from the real adder.

Hand values use gamma = 0.9. An unroll of T transitions holds T + 1 steps; across an episode's end
it holds the final observation as a step of its own (shared/agents/actor_critic/sequences.py).
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from shared.adders import SequenceAdder
from shared.agents.actor_critic.sequences import transitions
from shared.agents.impala import IMPALAConfig, vtrace_targets
from shared.agents.ppo import gae

GAMMA = 0.9


def vtrace(values, reward, discount, rho, **config):
    out = vtrace_targets(
        jnp.asarray([values], jnp.float32),
        jnp.asarray([reward], jnp.float32),
        jnp.asarray([discount], jnp.float32),
        jnp.asarray([rho], jnp.float32),
        IMPALAConfig(**config),
    )
    targets = np.asarray(out.errors[0]) + np.asarray(values[:-1])
    return targets, np.asarray(out.pg_advantage[0])


def test_vtrace_on_policy_weights_below_one_are_not_clipped():
    # V = [1, 2, 3] (x0, x1, bootstrap x2), r = [1, 1], rho = [0.5, 0.8]: c = rho
    # delta_1 = 0.8 (1 + 0.9 * 3 - 2) = 1.36                   v_1 = 2 + 1.36 = 3.36
    # delta_0 = 0.5 (1 + 0.9 * 2 - 1) = 0.9; v_0 = 1 + 0.9 + 0.9 * 0.5 * 1.36 = 2.512
    # A_0 = 0.5 (1 + 0.9 * 3.36 - 1) = 1.512;  A_1 = 0.8 (1 + 0.9 * 3 - 2) = 1.36
    targets, advantages = vtrace([1.0, 2.0, 3.0], [1, 1], [GAMMA, GAMMA], [0.5, 0.8])
    np.testing.assert_allclose(targets, [2.512, 3.36], rtol=1e-6)
    np.testing.assert_allclose(advantages, [1.512, 1.36], rtol=1e-6)


def test_vtrace_clips_rho_at_rho_bar_and_the_traces_at_one():
    # rho = [2, 3] with rho_bar = 1: every weight 1, every c 1
    # delta = [1.8, 1.7]; v_1 = 3.7; v_0 = 1 + 1.8 + 0.9 * 1.7 = 4.33; A_0 = 1 + 0.9 * 3.7 - 1
    targets, advantages = vtrace([1.0, 2.0, 3.0], [1, 1], [GAMMA, GAMMA], [2.0, 3.0])
    np.testing.assert_allclose(targets, [4.33, 3.7], rtol=1e-6)
    np.testing.assert_allclose(advantages, [3.33, 1.7], rtol=1e-6)
    # rho_bar = 1.5: the TD errors get 1.5, the traces c stay at 1, the pg weights at 1
    # delta = [2.7, 2.55]; v_1 = 4.55; v_0 = 1 + 2.7 + 0.9 * 2.55 = 5.995; A_0 = 0.9 * 4.55
    targets, advantages = vtrace(
        [1.0, 2.0, 3.0], [1, 1], [GAMMA, GAMMA], [2.0, 3.0], clip_rho_threshold=1.5
    )
    np.testing.assert_allclose(targets, [5.995, 4.55], rtol=1e-6)
    np.testing.assert_allclose(advantages, [4.095, 1.7], rtol=1e-6)


def unroll_across_an_episode_end(*, terminated: bool):
    """One env, unroll_length 4: two actions, the episode ends, two actions of the next one."""
    items = []
    adder = SequenceAdder(
        items.append, num_envs=1, sequence_length=5, period=4, batch_size=1,
        end_of_episode="continue",
    )  # fmt: skip
    adder.add_first(np.array([[0.0]]))
    extras = {"param_version": np.array([7], np.int32)}
    end = np.array([True])
    for t, (next_obs, ends) in enumerate([(1.0, False), (2.0, True), (11.0, False), (12.0, False)]):
        adder.add(
            np.array([t]), np.array([1.0]), np.array([[next_obs]]),
            terminated=end & ends & terminated, truncated=end & ends & (not terminated),
            extras=extras,
        )  # fmt: skip
        if ends:
            adder.add_first(np.array([[10.0]]))
    (item,) = items
    return {k: jnp.asarray(v) for k, v in item.items()}


@pytest.mark.parametrize("terminated", [False, True])
def test_the_adder_keeps_the_final_observation_and_the_version_in_the_unroll(terminated):
    item = unroll_across_an_episode_end(terminated=terminated)
    # x0, x1, final x2 (no action), the next episode's first x0' = 10, x1' = 11
    np.testing.assert_array_equal(item["observation"][0, :, 0], [0, 1, 2, 10, 11])
    np.testing.assert_array_equal(item["start_of_episode"][0], [1, 0, 0, 1, 0])
    np.testing.assert_array_equal(item["discount"][0], [1, 0 if terminated else 1, 0, 1, 1])
    np.testing.assert_array_equal(item["reward"][0], [1, 1, 0, 1, 1])
    np.testing.assert_array_equal(item["param_version"][0], [7] * 5)  # no lag of "version 0"
    steps = transitions(item, GAMMA)
    np.testing.assert_array_equal(steps.valid[0], [True, True, False, True])
    np.testing.assert_allclose(steps.discount[0], [0.9, 0 if terminated else 0.9, 0, 0.9])
    np.testing.assert_array_equal(steps.reward[0], [1, 1, 0, 1])


@pytest.mark.parametrize("terminated", [False, True])
def test_vtrace_across_an_episode_end(terminated):
    steps = transitions(unroll_across_an_episode_end(terminated=terminated), GAMMA)
    values = [1.0, 2.0, 3.0, 4.0, 5.0]  # V(x0), V(x1), V(final), V(x0'), V(x1')
    rho = np.asarray(steps.valid[0], np.float32)  # on-policy; 0 where no transition
    targets, advantages = vtrace(values, steps.reward[0], steps.discount[0], rho)
    # next episode: v_3 = 4 + (1 + 0.9 * 5 - 4) = 5.5; the final step: v_2 = V(final) = 3
    # truncated:  v_1 = 2 + (1 + 0.9 * 3 - 2) = 3.7;  v_0 = 1 + 1.8 + 0.9 * 1.7 = 4.33
    # terminated: v_1 = 2 + (1 - 2) = 1;              v_0 = 1 + 1.8 + 0.9 * (-1) = 1.9
    expected = [1.9, 1.0] if terminated else [4.33, 3.7]
    np.testing.assert_allclose(targets, [*expected, 3.0, 5.5], rtol=1e-6)
    assert advantages[2] == 0.0
    np.testing.assert_allclose(advantages[3], 1.5, rtol=1e-6)


@pytest.mark.parametrize("terminated", [False, True])
def test_gae_across_an_episode_end(terminated):
    steps = transitions(unroll_across_an_episode_end(terminated=terminated), GAMMA)
    values = jnp.asarray([[1.0, 2.0, 3.0, 4.0, 5.0]])
    advantages = np.asarray(gae(values, steps.reward, steps.discount, steps.valid, 0.95)[0])
    # delta_3 = 1 + 0.9 * 5 - 4 = 1.5 (the next episode's; it must not flow into A_1)
    # truncated:  delta_1 = 1 + 0.9 * 3 - 2 = 1.7 = A_1;  A_0 = 1.8 + 0.9 * 0.95 * 1.7 = 3.2535
    # terminated: delta_1 = 1 - 2 = -1 = A_1;             A_0 = 1.8 - 0.855 = 0.945
    expected = [0.945, -1.0] if terminated else [3.2535, 1.7]
    np.testing.assert_allclose(advantages, [*expected, 0.0, 1.5], rtol=1e-6)


def test_gae_without_an_episode_end_is_the_lambda_return_by_hand():
    # delta = [1 + 0.9 * 2 - 1, 1 + 0.9 * 3 - 2] = [1.8, 1.7]; A_0 = 1.8 + 0.9 * 0.5 * 1.7
    values = jnp.asarray([[1.0, 2.0, 3.0]])
    ones = jnp.ones((1, 2))
    advantages = gae(values, ones, GAMMA * ones, ones.astype(bool), 0.5)
    np.testing.assert_allclose(np.asarray(advantages[0]), [2.565, 1.7], rtol=1e-6)
