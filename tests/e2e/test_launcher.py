"""``rlfleet run`` end to end: real service processes, real CartPole, real sockets.

What flows: items into replay, learner steps, new parameter versions picked up by the actors,
episodes counted. What is left: the run folder's files, and no process at all, also when the
launcher is interrupted, fails, or is killed with SIGKILL.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from tests.support import ROOT, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

CLI = [sys.executable, "-m", "services.launcher.cli"]


class Launcher:
    """``rlfleet run`` as a child process, its output in a file."""

    def __init__(self, runs_dir: Path, name: str, *args: str) -> None:
        self.run_dir = runs_dir / name
        self.out_path = runs_dir / f"{name}.out"
        with open(self.out_path, "wb") as out:
            self.proc = subprocess.Popen(
                [*CLI, "run", "--name", name, "--runs-dir", str(runs_dir), *args],
                cwd=ROOT,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env={k: v for k, v in os.environ.items() if k != "RLFLEET_TOKEN"},
            )

    @property
    def output(self) -> str:
        return self.out_path.read_text(errors="replace")

    def config(self) -> dict[str, Any] | None:
        try:
            return json.loads((self.run_dir / "config.json").read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None

    def services(self) -> dict[str, dict[str, Any]]:
        config = self.config()
        return config["services"] if config else {}

    def all_started(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"launcher exited early:\n{self.output}")
        services = self.services()
        return bool(services) and all(s["pid"] for s in services.values())

    def wait(self, timeout_s: float) -> int:
        try:
            return self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired as e:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(
                f"launcher still running after {timeout_s}s:\n{self.output}"
            ) from e

    def cleanup(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for pid in alive_in_groups(self.pgids()):
            os.kill(pid, signal.SIGKILL)

    def pgids(self) -> set[int]:
        return {s["pid"] for s in self.services().values() if s["pid"]}


def alive_in_groups(pgids: set[int]) -> list[int]:
    """Live (not zombie) processes whose process group is one of ``pgids``."""
    alive = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        state, _ppid, pgrp = text.rsplit(")", 1)[1].split()[:3]
        if int(pgrp) in pgids and state not in ("Z", "X"):
            alive.append(int(stat.parent.name))
    return alive


def get(url: str) -> Any:
    try:
        response = httpx.get(url, timeout=2.0)
    except httpx.HTTPError:
        return None
    return response.json() if response.status_code == 200 else None


@pytest.fixture
def launchers(tmp_path: Path):
    started: list[Launcher] = []

    def launch(name: str, *args: str) -> Launcher:
        launcher = Launcher(tmp_path, name, *args)
        started.append(launcher)
        return launcher

    yield launch
    for launcher in started:
        launcher.cleanup()


def test_run_moves_data_and_stops_on_ctrl_c(launchers, tmp_path: Path) -> None:
    run = launchers(
        "flow", "--actors", "2", "--num-envs", "4", "--max-seconds", "200",
        "--checkpoint-every", "3",
    )  # fmt: skip
    wait_until(run.all_started, timeout_s=90, what="all services started")
    urls = {name: s["url"] for name, s in run.services().items()}
    assert set(urls) == {"replay", "learner", "actor-0", "actor-1", "evaluator"}

    first_versions: dict[str, int] = {}
    seen: dict[str, Any] = {}

    def flowing() -> bool:
        tables = get(f"{urls['replay']}/tables")
        learner = get(f"{urls['learner']}/status")
        if not tables or not learner:
            return False
        seen["learner"] = learner
        seen["tables"] = tables
        for name in ("actor-0", "actor-1"):
            status = get(f"{urls[name]}/status")
            if status and status.get("param_version") is not None:
                first_versions.setdefault(name, status["param_version"])
                seen[name] = status
        return (
            learner["learner_steps"] > 100
            and learner["episodes"] > 10
            and learner["actor_steps"] > 0
            and all(
                name in seen and seen[name]["param_version"] > first_versions[name]
                for name in ("actor-0", "actor-1")
            )
            and all(seen[n]["inserted_items"] > 0 for n in ("actor-0", "actor-1"))
        )

    wait_until(flowing, timeout_s=120, what=f"data flowing; last seen {seen}", every_s=0.5)
    assert run.proc.poll() is None

    status = subprocess.run(
        [*CLI, "status", urls["learner"]],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert status.returncode == 0, status.stderr
    assert "learner_steps" in status.stdout

    time.sleep(3.5)  # past --checkpoint-every, so there is a checkpoint to evaluate
    run.proc.send_signal(signal.SIGINT)
    assert run.wait(60) == 130, run.output
    assert alive_in_groups(run.pgids()) == []

    folder = run.run_dir
    for path in ("config.json", "progress.csv", "progress.png", "summary.json"):
        assert (folder / path).stat().st_size > 0, path
    for name in urls:
        assert (folder / "logs" / f"{name}.log").exists(), name
    assert (folder / "learner").is_dir()
    config = json.loads((folder / "config.json").read_text())
    assert config["launcher"]["actors"] == 2
    assert config["experiment"] is not None  # the learner's GET /config
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["stop_reason"] == "interrupted (SIGINT)"
    assert summary["solved"] is None
    assert summary["learner_steps"] > 100
    assert summary["env_steps"] > 0
    assert summary["line"] in run.output
    rows = (folder / "progress.csv").read_text().splitlines()
    assert rows[0].startswith("wall_s,actor_steps,learner_steps")
    assert len(rows) > 5

    checkpoints = sorted((folder / "checkpoints").glob("ckpt-*.msgpack"))
    assert checkpoints, "no checkpoint written"
    evaluation = subprocess.run(
        [*CLI, "eval", str(checkpoints[-1]), "--episodes", "2"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert evaluation.returncode == 0, evaluation.stdout + evaluation.stderr
    assert "mean return over 2 evaluation episodes" in evaluation.stdout


def test_sigkill_of_the_launcher_takes_the_children_with_it(launchers) -> None:
    run = launchers("killed", "--actors", "1", "--no-evaluator", "--max-seconds", "120")
    wait_until(run.all_started, timeout_s=90, what="all services started")
    pgids = run.pgids()
    assert len(alive_in_groups(pgids)) >= 3
    run.proc.send_signal(signal.SIGKILL)
    run.proc.wait(timeout=10)
    wait_until(lambda: not alive_in_groups(pgids), timeout_s=10, what="children gone (PDEATHSIG)")


@pytest.mark.redis
def test_a_limit_before_the_target_is_a_failure_with_redis_replay(launchers, redis_url) -> None:
    run = launchers(
        "limit", "--actors", "1", "--no-evaluator", "--num-envs", "4",
        "--max-steps", "1500", "--until-return", "1000", "--redis-url", redis_url,
    )  # fmt: skip
    assert run.wait(120) == 3, run.output
    assert alive_in_groups(run.pgids()) == []
    summary = json.loads((run.run_dir / "summary.json").read_text())
    assert summary["solved"] is False
    assert summary["stop_reason"] == "max-steps"
    assert summary["env_steps"] >= 1500
    assert (run.run_dir / "progress.png").exists()
    assert redis.Redis.from_url(redis_url).dbsize() > 0


def test_a_crashed_service_fails_the_run_and_shows_its_log(launchers) -> None:
    run = launchers("crash", "--actors", "1", "--agent-config", '{"no_such_field": 1}')
    assert run.wait(120) == 1, run.output
    assert "learner exited" in run.output
    assert "no_such_field" in run.output  # the tail of the learner's log
    assert alive_in_groups(run.pgids()) == []
    summary = json.loads((run.run_dir / "summary.json").read_text())
    assert summary["failed_service"] == "learner"


def test_services_slower_than_the_start_timeout_fail_the_run_cleanly(launchers) -> None:
    run = launchers("slow", "--actors", "1", "--no-evaluator", "--start-timeout", "0.5")
    assert run.wait(60) == 1, run.output
    output = " ".join(run.output.split())
    assert "did not answer /healthz" in output and "within 0.5s" in output, output
    assert "longer --start-timeout" in output
    assert alive_in_groups(run.pgids()) == []
    assert json.loads((run.run_dir / "summary.json").read_text())["stop_reason"] == "failed"
