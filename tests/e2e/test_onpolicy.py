"""IMPALA and PPO end to end: through the real services and in one process, a few hundred updates.

Small unrolls and batches keep each run to a few thousand env steps; the runs check that the
unrolls flow through the queue table (every update consumes batch_size of them), that the
learner reports the policy lag of what it consumes, and that the in-process runs are the same
bit for bit (IMPALA; PPO's update is as deterministic, and runs in process on a Box action space,
Pendulum, with observation normalization).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

from services.launcher.inprocess import train
from shared import codec
from tests.e2e.test_launcher import Launcher, alive_in_groups

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

SMALL = {"unroll_length": 4, "batch_size": 2, "queue_size": 8, "insert_batch_size": 2,
         "hidden_sizes": [32], "num_envs": 4}  # fmt: skip
PPO_SMALL = {**SMALL, "update_epochs": 2, "num_minibatches": 2}
CONFIGS = {"impala": SMALL, "ppo": PPO_SMALL}


@pytest.mark.parametrize("agent", ["impala", "ppo"])
def test_trains_through_the_services_from_a_queue_table(tmp_path: Path, agent: str) -> None:
    config = CONFIGS[agent]
    run = Launcher(
        tmp_path, agent, "--agent", agent, "--actors", "2", "--max-steps", "3000",
        "--agent-config", json.dumps(config), "--no-evaluator",
    )  # fmt: skip
    try:
        assert run.wait(180) == 0, run.output
    finally:
        run.cleanup()
    assert alive_in_groups(run.pgids()) == []
    summary = json.loads((run.run_dir / "summary.json").read_text())
    assert summary["stop_reason"] == "max-steps"
    # each update consumed batch_size unrolls of unroll_length steps, each unroll once. The counters
    # lag the actors by their last unreported steps (a few %), so a 10% margin; an unroll consumed
    # twice would double the figure
    final = codec.decode(
        sorted((run.run_dir / "checkpoints").glob("ckpt-*.msgpack"))[-1].read_bytes()
    )
    consumed = final["step"] * config["batch_size"] * config["unroll_length"]
    assert summary["learner_steps"] >= 200
    assert consumed <= 1.1 * final["counters"]["actor_steps"], (consumed, final["counters"])
    table = json.loads((run.run_dir / "config.json").read_text())["experiment"]["tables"]
    assert table[f"{agent}_unrolls"]["rate_limiter"]["kind"] == "queue"
    rows = [
        json.loads(r) for r in (run.run_dir / "learner" / "metrics.jsonl").read_text().splitlines()
    ]
    # the lag of what each update consumed, in versions: never more than were published, and
    # small in a typical window. One window's max is timing (CI saw 131 in the last one, after
    # max-steps, when an actor held back by the full queue had its old unrolls taken at the end)
    lags = [(r["policy_lag_mean"], r["policy_lag_max"]) for r in rows if "policy_lag_max" in r]
    assert lags and all(0 <= mean <= most <= summary["param_version"] for mean, most in lags)
    assert float(np.median([mean for mean, _ in lags])) < 50, lags
    assert all(np.isfinite(row["loss"]) for row in rows)


def _train(tmp_path: Path, agent: str, name: str, env_id: str = "CartPole-v1", **config):
    return train(
        agent, env_id, name=name, runs_dir=tmp_path, seed=5, max_steps=3000,
        agent_config={**CONFIGS[agent], **config}, evaluator=False, console=Console(quiet=True),
    )  # fmt: skip


def test_impala_in_process_gives_the_same_run_for_the_same_seed(tmp_path: Path) -> None:
    first, again = _train(tmp_path, "impala", "a"), _train(tmp_path, "impala", "b")
    assert first.summary["learner_steps"] >= 200
    assert first.episodes == again.episodes and first.params_hash == again.params_hash


def test_ppo_in_process_on_box_actions_normalizes_by_the_published_statistics(
    tmp_path: Path,
) -> None:
    result = _train(tmp_path, "ppo", "box", "Pendulum-v1", normalize_observations=True)
    assert result.summary["learner_steps"] >= 200
    params = result.params
    assert set(params) == {"network", "obs_mean", "obs_var"}
    # Pendulum's observation is (cos, sin, angular velocity): the statistics moved off 0 and 1
    assert (
        np.asarray(params["obs_var"])[2] > 1.5 and np.abs(np.asarray(params["obs_mean"])).max() > 0
    )
    assert np.asarray(params["network"]["params"]["log_std"]).shape == (1,)
