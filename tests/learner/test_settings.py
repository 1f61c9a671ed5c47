"""Learner settings: bad values are refused with the reason; the experiment is built at start."""

from __future__ import annotations

import pytest

from services.learner.settings import LearnerSettings


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
    with pytest.raises(ValueError, match="dqn needs a Discrete action space; Pendulum-v1 has Box"):
        LearnerSettings(env_id="Pendulum-v1")


@pytest.mark.parametrize(
    ("agent", "reason"),
    [
        ("nosuchagent", "no module 'shared.agents.nosuchagent'"),
        ("mylab.agents.x", "no module 'mylab.agents.x'"),
        (
            "json.decoder",
            "does not fulfil the agent contract (shared/interfaces.py): it has no Config",
        ),
        ("tests.learner.support", "no Config"),
    ],
)
def test_an_agent_that_cannot_be_loaded_is_refused_in_one_line(agent: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason.replace("(", r"\(").replace(")", r"\)")) as e:
        LearnerSettings(agent=agent)
    assert "\n" not in str(e.value.errors()[0]["msg"])


def test_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENT_CONFIG", '{"batch_size": 64, "hidden_sizes": [32, 32]}')
    monkeypatch.setenv("CHECKPOINT_EVERY_S", "5")
    monkeypatch.setenv("RLFLEET_TOKEN", "t")
    settings = LearnerSettings()
    config = settings.experiment.config
    assert config.batch_size == 64 and config.hidden_sizes == (32, 32)
    assert settings.checkpoint_every_s == 5.0 and settings.token == "t"
    assert settings.port == 8001 and settings.checkpoint_keep == 3


def test_batches_per_sample_is_the_agents_unless_set() -> None:
    assert LearnerSettings().experiment.fleet.batches_per_sample == 4  # DQN's fleet knob
    assert LearnerSettings(batches_per_sample=1).experiment.fleet.batches_per_sample == 1
    # window 2 * 200 = 400 items: one 64-item insert and two batches of 128 fit, four do not
    tight = {"error_buffer": 200.0, "insert_batch_size": 8, "samples_per_insert": 8.0}
    with pytest.raises(
        ValueError, match=r"= 576 items do not fit .* window max_diff - min_diff = 400"
    ):
        LearnerSettings(agent_config=tight)
    assert LearnerSettings(agent_config={**tight, "batches_per_sample": 2}).experiment
