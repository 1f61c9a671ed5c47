"""DQNConfig: validation, JSON round-trip, the replay table body, the epsilon schedules."""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest

from services.experiment import ExperimentError, build_experiment
from services.replay.config import TableConfig
from shared.agents.dqn import DQNConfig, make_network, make_policy
from shared.config import config_from_dict, config_to_dict
from shared.interfaces import Placement


def test_round_trip_through_json_restores_tuples() -> None:
    config = DQNConfig(hidden_sizes=(32, 16), n_step=5, prioritized=True)
    back = config_from_dict(DQNConfig, json.loads(json.dumps(config_to_dict(config))))
    assert back == config
    assert back.hidden_sizes == (32, 16)


def test_from_dict_takes_partial_overrides_and_ints_for_floats() -> None:
    config = config_from_dict(DQNConfig, {"learning_rate": 1, "n_step": 1})
    assert config.learning_rate == 1.0 and isinstance(config.learning_rate, float)
    assert config.n_step == 1 and config.batch_size == DQNConfig().batch_size


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"lerning_rate": 0.1}, r"unknown DQNConfig field\(s\) \['lerning_rate'\]"),
        ({"n_step": "3"}, "n_step must be int"),
        ({"n_step": 2.5}, "n_step must be int"),
        ({"prioritized": 1}, "prioritized must be bool"),
        ({"discount": 1.5}, "discount must be in"),
        ({"n_step": 0}, "must be >= 1"),
    ],
)
def test_bad_overrides_are_refused_clearly(overrides: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        config_from_dict(DQNConfig, overrides)


def test_knobs_that_would_deadlock_the_rate_limiter_are_refused_with_the_table() -> None:
    with pytest.raises(ExperimentError, match="deadlock"):
        build_experiment("dqn", "CartPole-v1", overrides={"error_buffer": 10.0})


def test_replay_table_config_is_the_contract_body() -> None:
    config = DQNConfig(
        max_replay_size=1000,
        min_replay_size=100,
        samples_per_insert=4.0,
        error_buffer=400.0,
        insert_batch_size=64,
    )
    body = config.replay_table_config(obs_dim=4)
    assert body == {
        "sampler": {"kind": "uniform"},
        "remover": {"kind": "fifo"},
        "max_size": 1000,
        "max_times_sampled": 0,
        "rate_limiter": {
            "kind": "sample_to_insert_ratio",
            "samples_per_insert": 4.0,
            "min_size_to_sample": 100,
            "error_buffer": 400.0,
        },
        "signature": {
            "observation": {"dtype": "<f4", "shape": [4]},
            "action": {"dtype": "<i4", "shape": []},
            "reward": {"dtype": "<f4", "shape": []},
            "discount": {"dtype": "<f4", "shape": []},
            "next_observation": {"dtype": "<f4", "shape": [4]},
        },
    }
    assert json.loads(json.dumps(body)) == body
    TableConfig.model_validate(body)  # the replay service accepts it (no deadlock)


def test_prioritized_table_and_defaults_validate_in_the_replay_service() -> None:
    body = DQNConfig(prioritized=True, priority_exponent=0.5).replay_table_config(obs_dim=8)
    assert body["sampler"] == {"kind": "prioritized", "priority_exponent": 0.5}
    TableConfig.model_validate(body)
    TableConfig.model_validate(DQNConfig().replay_table_config(obs_dim=4))


def _epsilons(config: DQNConfig, placement: Placement, **kw) -> np.ndarray:
    """The fixed epsilons (Ape-X, evaluation) a policy starts with for ``placement``."""
    policy = make_policy(make_network(config, 2), config, **kw)
    return np.asarray(policy.init(jax.random.PRNGKey(0), placement).epsilon)


def test_epsilon_schedule_is_linear_in_the_actors_own_steps() -> None:
    config = DQNConfig(epsilon_start=1.0, epsilon_end=0.1, epsilon_decay_steps=1000)
    network = make_network(config, 2)
    policy = make_policy(network, config)
    obs, first = np.zeros((100, 4), np.float32), np.zeros(100, bool)
    params = network.init(jax.random.PRNGKey(0), obs)
    greedy = int(np.argmax(network.apply(params, obs[:1])[0]))
    state = policy.init(jax.random.PRNGKey(0), Placement(num_envs=100))
    explored = []  # a random action misses the greedy one half the time: epsilon / 2
    for _ in range(30):  # 3,000 env steps: epsilon 1 -> 0.1 over the first 1,000
        actions, extras, state = policy.step(params, state, obs, first)
        explored.append(np.mean(np.asarray(actions) != greedy))
    assert extras == {}
    assert int(state.steps) == 1000  # the schedule's clock saturates at the decay steps
    assert explored[0] > 0.3  # epsilon 1
    assert np.mean(explored[-10:]) < 0.12  # epsilon 0.1: about 0.05
    # an actor of a resumed run (or one joining late) carries on from its share of the fleet's
    # steps: 2 actors and 4,000 fleet steps put it past the decay, 1,000 steps half way through
    late = policy.init(jax.random.PRNGKey(0), Placement(100, 0, 2, fleet_steps=4000))
    assert int(late.steps) == 1000
    assert int(policy.init(jax.random.PRNGKey(0), Placement(100, 1, 2, 1000)).steps) == 500
    actions, _, _ = policy.step(params, late, obs, first)
    assert np.mean(np.asarray(actions) != greedy) < 0.12


def test_ape_x_spread_and_evaluation_epsilons() -> None:
    config = DQNConfig(ape_x_spread=True, ape_x_base=0.4, ape_x_alpha=7.0)
    three = [_epsilons(config, Placement(1, i, 3))[0] for i in range(3)]
    assert three == pytest.approx([0.4, 0.4**4.5, 0.4**8])
    assert _epsilons(config, Placement(1, 0, 1))[0] == pytest.approx(0.4)
    # each env of an actor is one Ape-X actor of the fleet: 2 actors x 2 envs = 4
    spread = _epsilons(config, Placement(2, 1, 2))
    assert spread == pytest.approx([0.4 ** (1 + 7 * 2 / 3), 0.4**8])
    evaluation = _epsilons(DQNConfig(evaluation_epsilon=0.05), Placement(3), evaluation=True)
    assert evaluation == pytest.approx([0.05] * 3)
