"""SAC and TD3 on Pendulum-v1: through the real services and in one process, and resumed.

Tiny runs (a few hundred updates on small networks): they prove the float action vectors flow
through policy, adder, codec, replay and learner, that the published policy acts within the
action bounds, and that a run carries on from its checkpoint (``rlfleet run --resume``).
Learning itself is measured by ``python -m bench.baselines`` (docs/baselines.md).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import jax
import numpy as np
import pytest
from rich.console import Console

from services.experiment import build_experiment
from services.launcher.inprocess import train
from services.launcher.run import ResumeError, resumed_options
from shared import codec
from shared.interfaces import Placement
from tests.e2e.test_launcher import CLI, Launcher, alive_in_groups
from tests.support import ROOT

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

SMALL = {
    "hidden_sizes": [32, 32],
    "batch_size": 32,
    "batches_per_sample": 2,
    "min_replay_size": 200,
    "random_steps": 100,
    "error_buffer_steps": 50,  # actors wait for the learner's first (compiling) update
}


def assert_acts_within_bounds(agent: str, policy_params) -> None:
    """Both policies of ``agent``, with these published parameters, on wild observations."""
    experiment = build_experiment(agent, "Pendulum-v1", overrides=SMALL)
    low, high = experiment.spec.action_space.low, experiment.spec.action_space.high
    obs = np.array([[1.0, 0.0, 8.0], [-1.0, 0.0, -8.0], [0.0, 1.0, 100.0]], np.float32)
    for policy in (experiment.agent.policy, experiment.agent.evaluation_policy):
        state = policy.init(jax.random.PRNGKey(0), Placement(3))
        for _ in range(2):
            action, _, state = policy.step(policy_params, state, obs, np.zeros(3, bool))
            action = np.asarray(action)
            assert action.shape == (3, 1) and np.all((low <= action) & (action <= high)), action


def test_sac_trains_pendulum_through_the_services(
    tmp_path: Path,
) -> None:
    options = ["--agent", "sac", "--env-id", "Pendulum-v1", "--actors", "1", "--no-evaluator"]
    options += ["--agent-config", json.dumps(SMALL), "--checkpoint-every", "1"]
    first = Launcher(tmp_path, "sac", *options, "--max-steps", "800")
    try:
        assert first.wait(200) == 0, first.output
    finally:
        first.cleanup()
    assert alive_in_groups(first.pgids()) == []
    summary = json.loads((first.run_dir / "summary.json").read_text())
    assert summary["stop_reason"] == "max-steps" and summary["learner_steps"] >= 300
    experiment = json.loads((first.run_dir / "config.json").read_text())["experiment"]
    assert experiment["tables"]["sac_transitions"]["signature"]["action"]["shape"] == [1]
    checkpoint = sorted((first.run_dir / "checkpoints").glob("ckpt-*.msgpack"))[-1]
    saved = codec.decode(checkpoint.read_bytes())
    assert {"policy_params", "critic_params", "log_alpha"} <= set(saved["training_state"])
    assert_acts_within_bounds("sac", saved["training_state"]["policy_params"])


@pytest.mark.parametrize("agent", ["sac", "td3"])
def test_both_train_pendulum_in_one_process_and_a_run_resumes(tmp_path: Path, agent: str) -> None:
    def run(max_steps: int):
        return train(
            agent, "Pendulum-v1", name=agent, runs_dir=tmp_path, max_steps=max_steps,
            agent_config=SMALL, checkpoint_every_s=1.0, console=Console(quiet=True),
        )  # fmt: skip

    first = run(600)
    assert first.summary["learner_steps"] >= 300
    assert all(np.isfinite(r) and length == 200 for _, r, length in first.episodes)
    assert_acts_within_bounds(agent, first.params)
    if agent == "sac":
        return  # one resume is enough: compiling again costs ~10 s
    # interrupted or not, `rlfleet run --resume` carries the run on from its newest checkpoint
    folder = tmp_path / agent
    again = subprocess.run(
        [*CLI, "run", "--resume", str(folder), "--max-steps", "1000"], cwd=ROOT,
        capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert again.returncode == 0, again.stdout + again.stderr
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["home"] == "in-process" and summary["agent"] == "td3"  # the saved options
    assert summary["env_steps"] >= 1000 and summary["stop_reason"] == "max-steps"
    assert summary["learner_steps"] > first.summary["learner_steps"]  # counted on from there


def test_resume_refuses_a_folder_it_cannot_carry_on(tmp_path: Path) -> None:
    from services.launcher.cli import main

    assert main(["run", "--resume", str(tmp_path / "nothing")]) == 2
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "config.json").write_text(json.dumps({"launcher": {}}))
    with pytest.raises(ResumeError, match="holds no checkpoint to resume from"):
        resumed_options(tmp_path / "empty")
    # a fresh run into an existing folder is still refused, and told of --resume
    assert main(["run", "--runs-dir", str(tmp_path), "--name", "empty", "--in-process"]) == 2
