"""``rlfleet run --in-process``: the same agent in one process, the same run bit for bit."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

from services.launcher.inprocess import train
from shared import codec
from tests.e2e.test_launcher import CLI
from tests.support import ROOT

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

SMALL = {"hidden_sizes": [32], "min_replay_size": 200, "epsilon_decay_steps": 1000}


def _train(tmp_path: Path, name: str, seed: int):
    return train(
        "dqn", "CartPole-v1", name=name, runs_dir=tmp_path, seed=seed, max_steps=6000,
        agent_config=SMALL, console=Console(quiet=True),
    )  # fmt: skip


def test_the_same_seed_gives_the_same_run_bit_for_bit(tmp_path: Path) -> None:
    first, again = _train(tmp_path, "a", 3), _train(tmp_path, "b", 3)
    assert first.summary["learner_steps"] > 500 and len(first.episodes) > 50
    assert first.episodes == again.episodes  # every episode: actor, return, length, in order
    assert first.params_hash == again.params_hash
    for x, y in zip(
        np.asarray(first.params["params"]["Dense_0"]["kernel"]),
        np.asarray(again.params["params"]["Dense_0"]["kernel"]),
        strict=True,
    ):
        np.testing.assert_array_equal(x, y)
    other = _train(tmp_path, "c", 4)
    assert other.episodes != first.episodes and other.params_hash != first.params_hash
    # the evaluator's episodes are in the record too, apart from the training ones
    assert {name for name, _, _ in first.episodes} == {"actor-0", "actor-1", "evaluator"}


def test_the_command_leaves_the_same_run_folder_as_the_services(tmp_path: Path) -> None:
    args = ["--in-process", "--runs-dir", str(tmp_path), "--max-steps", "3000", "--seed", "1"]
    args += ["--agent-config", json.dumps(SMALL), "--checkpoint-every", "1"]
    done = subprocess.run(
        [*CLI, "run", "--name", "one", *args], cwd=ROOT, capture_output=True, text=True,
        timeout=180,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    folder = tmp_path / "one"
    for path in ("config.json", "progress.csv", "progress.png", "summary.json"):
        assert (folder / path).stat().st_size > 0, path
    assert (folder / "learner" / "metrics.jsonl").stat().st_size > 0
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["home"] == "in-process" and summary["stop_reason"] == "max-steps"
    assert summary["line"] in done.stdout.replace("\n", "")
    config = json.loads((folder / "config.json").read_text())
    assert config["experiment"]["agent"] == "dqn" and config["launcher"]["in_process"]
    checkpoint = sorted((folder / "checkpoints").glob("ckpt-*.msgpack"))[-1]
    assert codec.decode(checkpoint.read_bytes())["step"] == summary["learner_steps"]
    evaluation = subprocess.run(
        [*CLI, "eval", str(checkpoint), "--episodes", "2"], cwd=ROOT, capture_output=True,
        text=True, timeout=120,
    )  # fmt: skip
    assert evaluation.returncode == 0, evaluation.stdout + evaluation.stderr

    refused = subprocess.run(
        [*CLI, "run", "--name", "two", *args, "--redis-url", "redis://x"], cwd=ROOT,
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert refused.returncode == 2 and "--in-process has no services" in refused.stdout
    bad = subprocess.run(
        [*CLI, "run", "--name", "three", "--in-process", "--runs-dir", str(tmp_path),
         "--agent", "nosuch"], cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert bad.returncode == 2 and "no module 'shared.agents.nosuch'" in bad.stdout


def test_items_carry_the_version_that_acted_when_the_agent_asks(tmp_path: Path) -> None:
    result = train(
        "tests.agents.tiny", "CartPole-v1", name="tiny", runs_dir=tmp_path, max_steps=3000,
        console=Console(quiet=True),
    )  # fmt: skip
    assert result.summary["learner_steps"] > 0
    rows = [json.loads(line) for line in (tmp_path / "tiny" / "learner" / "metrics.jsonl").open()]
    lags = [(r["policy_lag_max"], r["param_version"]) for r in rows if "policy_lag_max" in r]
    assert lags and all(0 <= lag <= version for lag, version in lags)
    assert lags[-1][0] > 0  # a replay table holds items of older versions
