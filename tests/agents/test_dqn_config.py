"""DQNConfig: validation, JSON round-trip, the replay table body, the epsilon schedules."""

from __future__ import annotations

import json

import pytest

from services.replay.config import TableConfig
from shared.agents.dqn import DQNConfig


def test_round_trip_through_json_restores_tuples() -> None:
    config = DQNConfig(hidden_sizes=(32, 16), n_step=5, prioritized=True)
    back = DQNConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert back == config
    assert back.hidden_sizes == (32, 16)


def test_from_dict_takes_partial_overrides_and_ints_for_floats() -> None:
    config = DQNConfig.from_dict({"learning_rate": 1, "n_step": 1})
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
        ({"error_buffer": 10.0}, "deadlock"),
    ],
)
def test_bad_overrides_are_refused_clearly(overrides: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        DQNConfig.from_dict(overrides)


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


def test_epsilon_schedule_is_linear_in_the_actors_own_steps() -> None:
    config = DQNConfig(epsilon_start=1.0, epsilon_end=0.1, epsilon_decay_steps=1000)
    assert config.epsilon(0, 2, 0) == 1.0
    assert config.epsilon(1, 2, 500) == pytest.approx(0.55)
    assert config.epsilon(0, 2, 1000) == pytest.approx(0.1)
    assert config.epsilon(0, 2, 10**6) == pytest.approx(0.1)


def test_ape_x_spread() -> None:
    config = DQNConfig(ape_x_spread=True, ape_x_base=0.4, ape_x_alpha=7.0)
    assert [config.epsilon(i, 3, step=0) for i in range(3)] == pytest.approx(
        [0.4, 0.4**4.5, 0.4**8]
    )
    assert config.epsilon(0, 1, step=123) == pytest.approx(0.4)
    assert config.epsilon(4, 5, step=0) == pytest.approx(0.4**8)
