"""bench.chaos's short form: a real run (Redis, replay, learner, an actor; the tiny agent) under
kill -9 of the replay and of redis-server, SIGSTOP of the replay and, as root, a cut link.

Every acknowledged item and step must still be counted, versions must only grow, everything must
move again after each fault, and no process may exit by itself.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from bench.chaos.__main__ import main

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server")
def test_a_run_under_faults_loses_nothing_it_acknowledged(tmp_path: Path) -> None:
    out = tmp_path / "chaos.json"
    args = ["--short", "--actors", "1", "--no-evaluator", "--hold-s", "2", "--warmup-s", "0.5"]
    try:
        code = main([*args, "--run-dir", str(tmp_path / "run"), "--json", str(out)])
        summary = json.loads(out.read_text())
    finally:
        _print_log_tails(tmp_path / "run" / "logs")  # shown by pytest when the test fails
    rows = {row["fault"]: row for row in summary["rows"]}
    assert {"kill -9 replay", "kill -9 redis-server (appendfsync always)"} <= set(rows)
    for row in rows.values():
        assert row["items_lost"] == 0 and row["steps_lost"] == 0, row
        assert row["versions_monotone"] and row["crashes"] == 0, row
        assert row["recovery_s"] is not None, row
    assert summary["crashes"] == {} and code == 0


def _print_log_tails(logs: Path, lines: int = 25) -> None:
    for log in sorted(logs.glob("*")) if logs.is_dir() else []:
        tail = log.read_text(errors="replace").splitlines()[-lines:]
        print(f"---- {log.name}, last {len(tail)} lines", *tail, sep="\n")
