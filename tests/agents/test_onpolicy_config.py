"""IMPALA's and PPO's configs and tables: what they refuse, and the queue's deadlock check."""

from __future__ import annotations

import pytest

from services.experiment import ExperimentError, build_experiment
from shared.agents.impala import IMPALAConfig
from shared.agents.ppo import PPOConfig


@pytest.mark.parametrize("agent", ["impala", "ppo"])
def test_the_table_is_a_queue_of_unrolls_with_the_behaviour_log_prob(agent: str) -> None:
    experiment = build_experiment(agent, "CartPole-v1")
    (table,) = experiment.tables.values()
    assert table.rate_limiter.kind == "queue" and table.max_times_sampled == 1
    signature = table.signature
    assert signature["observation"]["shape"] == [experiment.config.unroll_length + 1, 4]
    assert {"log_prob", "param_version", "start_of_episode", "mask"} <= set(signature)


@pytest.mark.parametrize("agent", ["impala", "ppo"])
def test_a_queue_too_small_for_an_insert_and_a_batch_is_refused_as_a_deadlock(agent) -> None:
    overrides = {"queue_size": 10, "batch_size": 8, "insert_batch_size": 4}
    with pytest.raises(ExperimentError, match="deadlock"):
        build_experiment(agent, "CartPole-v1", overrides=overrides)
    build_experiment(agent, "CartPole-v1", overrides={**overrides, "queue_size": 12})


def test_impala_refuses_box_actions_and_ppo_takes_them() -> None:
    with pytest.raises(ExperimentError, match="impala needs Discrete actions"):
        build_experiment("impala", "Pendulum-v1")
    experiment = build_experiment("ppo", "Pendulum-v1")
    (table,) = experiment.tables.values()
    length = experiment.config.unroll_length + 1
    assert table.signature["raw_action"]["shape"] == [length, 1]  # the sample log_prob is of


def test_bad_configs_are_refused_with_the_reason() -> None:
    with pytest.raises(ValueError, match="num_minibatches must divide"):
        PPOConfig(batch_size=3, unroll_length=5, num_minibatches=4)
    with pytest.raises(ValueError, match="unroll_length must be >= 1"):
        IMPALAConfig(unroll_length=0)
    with pytest.raises(ValueError, match="vtrace_lambda"):
        IMPALAConfig(vtrace_lambda=1.5)


def test_the_step_size_decays_linearly_to_zero_over_the_env_steps_consumed() -> None:
    import jax.numpy as jnp

    from shared.agents.actor_critic.optimizer import clipped_adam

    # 100 env steps per update, 2 Adam steps per update, decay over 1,000 env steps: 20 Adam steps
    optimizer = clipped_adam(
        0.1, max_gradient_norm=1.0, adam_eps=1e-8, decay_env_steps=1000,
        env_steps_per_update=100, sgd_steps_per_update=2,
    )  # fmt: skip
    params, grads = jnp.zeros(1), jnp.ones(1)
    state, sizes = optimizer.init(params), []
    for _ in range(25):
        updates, state = optimizer.update(grads, state, params)
        sizes.append(-float(updates[0]))  # Adam's unit step times the step size
    assert sizes[0] == pytest.approx(0.1, rel=1e-3) and sizes[10] == pytest.approx(0.05, rel=1e-3)
    assert sizes[20:] == [0.0] * 5
    constant = clipped_adam(0.1, max_gradient_norm=1.0, adam_eps=1e-8)
    updates, _ = constant.update(grads, constant.init(params), params)
    assert -float(updates[0]) == pytest.approx(0.1, rel=1e-3)
    with pytest.raises(ValueError, match="learning_rate_decay_steps"):
        IMPALAConfig(learning_rate_decay_steps=-1)
