"""Any agent through the real services: the tiny agent of tests/agents/tiny.py, by module path.

No line of services/ knows it: the launcher starts replay, learner and actors with
``AGENT=tests.agents.tiny``, and it trains, checkpoints and evaluates through the contract.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from shared import codec
from tests.e2e.test_launcher import CLI, Launcher, alive_in_groups
from tests.support import ROOT

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

TINY = "tests.agents.tiny"


def eval_checkpoint(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*CLI, "eval", *args], cwd=ROOT, capture_output=True, text=True, timeout=120
    )


def test_an_agent_outside_shared_trains_through_the_services_by_module_path(
    tmp_path: Path,
) -> None:
    run = Launcher(
        tmp_path, "tiny", "--agent", TINY, "--actors", "2", "--max-steps", "4000",
        "--checkpoint-every", "1",
    )  # fmt: skip
    try:
        assert run.wait(180) == 0, run.output
    finally:
        run.cleanup()
    assert alive_in_groups(run.pgids()) == []
    summary = json.loads((run.run_dir / "summary.json").read_text())
    assert summary["stop_reason"] == "max-steps" and summary["env_steps"] >= 4000
    assert summary["learner_steps"] > 20 and summary["param_version"] > 2
    experiment = json.loads((run.run_dir / "config.json").read_text())["experiment"]
    assert experiment["agent"] == TINY
    assert "log_prob" in experiment["tables"]["tiny"]["signature"]  # the policy's extra
    for actor in ("actor-0", "actor-1"):
        log = (run.run_dir / "logs" / f"{actor}.log").read_text()
        assert f"agent {TINY}" in log, log
    metrics = (run.run_dir / "learner" / "metrics.jsonl").read_text().splitlines()
    row = json.loads(metrics[-1])
    assert "log_prob_mean" in row  # the stored extra reached the learner
    assert 0 <= row["policy_lag_mean"] <= row["policy_lag_max"]  # versions that acted, by item

    checkpoint = sorted((run.run_dir / "checkpoints").glob("ckpt-*.msgpack"))[-1]
    saved = codec.decode(checkpoint.read_bytes())
    assert saved["agent"] == TINY and set(saved["training_state"]["params"]) == {"w", "b"}
    evaluation = eval_checkpoint(str(checkpoint), "--episodes", "2")
    assert evaluation.returncode == 0, evaluation.stdout + evaluation.stderr
    assert f"{TINY} on CartPole-v1" in evaluation.stdout
    assert "mean return over 2 evaluation episodes" in evaluation.stdout

    wrong_agent = eval_checkpoint(str(checkpoint), "--agent", "dqn")
    assert wrong_agent.returncode == 1
    assert f"trained by agent '{TINY}', not 'dqn'" in wrong_agent.stdout.replace("\n", "")
    wrong_env = eval_checkpoint(str(checkpoint), "--env-id", "Acrobot-v1")
    assert wrong_env.returncode == 1
    assert "was trained on CartPole-v1" in wrong_env.stdout.replace("\n", "")


def test_an_agent_that_refuses_the_environment_stops_the_learner_with_exit_2(
    tmp_path: Path,
) -> None:
    run = Launcher(tmp_path, "refused", "--agent", TINY, "--env-id", "Pendulum-v1", "--actors", "1")
    try:
        assert run.wait(120) == 1, run.output
    finally:
        run.cleanup()
    summary = json.loads((run.run_dir / "summary.json").read_text())
    assert summary["failed_service"] == "learner"
    log = (run.run_dir / "logs" / "learner.log").read_text()
    assert "tiny needs flat observations and Discrete actions" in log
    assert "Traceback" not in log
    assert "learner exited with code 2" in run.output.replace("\n", " ")
