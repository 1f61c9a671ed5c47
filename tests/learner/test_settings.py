"""Learner settings: bad values are refused with the reason; derived defaults."""

from __future__ import annotations

import pytest

from services.learner.settings import DEFAULT_BATCHES_PER_SAMPLE, LearnerSettings


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown DQNConfig field"):
        LearnerSettings(agent_config='{"batch_sz": 3}')
    with pytest.raises(ValueError, match="not valid JSON"):
        LearnerSettings(agent_config="{batch_size: 3")
    with pytest.raises(ValueError, match="must be int"):
        LearnerSettings(agent_config={"batch_size": "big"})
    with pytest.raises(ValueError, match="not a registered gymnasium"):
        LearnerSettings(env_id="NoSuchEnv-v9")
    with pytest.raises(ValueError, match="deadlock"):
        LearnerSettings(agent_config={"error_buffer": 1.0})
    with pytest.raises(ValueError, match=r"BATCHES_PER_SAMPLE.*deadlock"):
        LearnerSettings(agent_config={"error_buffer": 17_000.0}, batches_per_sample=40)


def test_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENT_CONFIG", '{"batch_size": 64, "hidden_sizes": [32, 32]}')
    monkeypatch.setenv("CHECKPOINT_EVERY_S", "5")
    monkeypatch.setenv("RLFLEET_TOKEN", "t")
    settings = LearnerSettings()
    config = settings.make_agent_config()
    assert config.batch_size == 64 and config.hidden_sizes == (32, 32)
    assert settings.checkpoint_every_s == 5.0 and settings.token == "t"
    assert settings.port == 8001 and settings.checkpoint_keep == 3


def test_batches_per_sample_defaults_to_what_the_rate_limiter_allows() -> None:
    assert LearnerSettings().sample_batches() == DEFAULT_BATCHES_PER_SAMPLE
    # window = 2 * 200 - 8 * 8 = 336 items: two batches of 128
    tight = {"error_buffer": 200.0, "insert_batch_size": 8, "samples_per_insert": 8.0}
    assert LearnerSettings(agent_config=tight).sample_batches() == 2
    assert LearnerSettings(batches_per_sample=1).sample_batches() == 1
