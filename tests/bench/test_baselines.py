"""bench.baselines and bench.system: a seed whose run fails is reported in one line, not as a
traceback (both go through ``bench.harness.run_launcher``)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BAD_CONFIG = '{"n_step": 0}'  # refused by DQNConfig before anything starts


def assert_fails_with(command: list[str], line: str) -> None:
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stdout + done.stderr
    output = " ".join((done.stdout + done.stderr).split())
    assert "Traceback" not in output
    assert line in output
    assert "n_step must be >= 1" in output


def test_a_seed_whose_run_fails_ends_the_bench_with_its_reason(tmp_path: Path) -> None:
    command = [
        sys.executable, "-m", "bench.baselines", "--agent", "dqn", "--env", "CartPole-v1",
        "--seeds", "0", "--home", "in-process", "--no-write", "--runs-dir", str(tmp_path),
        "--agent-config", BAD_CONFIG,
    ]  # fmt: skip
    assert_fails_with(command, "seed 0: the run exited 2 with no summary")


def test_bench_system_ends_with_the_failing_seed_and_variant(tmp_path: Path) -> None:
    command = [
        sys.executable, "-m", "bench.system", "--seeds", "0", "--variants", "in-process",
        "--no-write", "--runs-dir", str(tmp_path), "--", "--agent-config", BAD_CONFIG,
    ]  # fmt: skip
    assert_fails_with(command, "seed 0, in-process: the run exited 2 with no summary")
