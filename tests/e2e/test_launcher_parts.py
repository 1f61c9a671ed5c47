"""The launcher's parts against real services: process groups, /status, progress, plot."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from rich.console import Console

from services.launcher.plot import plot_progress
from services.launcher.processes import Child, child_env, free_port, stop_children, wait_healthy
from services.launcher.progress import (
    PROGRESS_COLUMNS,
    Poller,
    ProgressLog,
    Snapshot,
    read_progress,
    table_infos,
)
from services.launcher.status import print_status, status_url
from tests.e2e.test_launcher import alive_in_groups
from tests.support import ROOT

pytestmark = pytest.mark.timeout(120)


def replay_child(tmp_path: Path) -> Child:
    port = free_port()
    env = child_env({"HOST": "127.0.0.1", "PORT": str(port)}, base={"PATH": "/usr/bin:/bin"})
    return Child("replay", "replay", port, env, tmp_path / "logs" / "replay.log")


async def test_a_child_runs_in_its_own_group_and_is_stopped_with_it(tmp_path: Path) -> None:
    child = replay_child(tmp_path)
    child.start(ROOT)
    try:
        await wait_healthy(child, timeout_s=60, headers={})
        assert alive_in_groups({child.pid}) == [child.pid]
        table = {
            "sampler": {"kind": "uniform"},
            "remover": {"kind": "fifo"},
            "max_size": 10,
            "rate_limiter": {"kind": "min_size", "min_size_to_sample": 1},
        }
        import httpx

        async with httpx.AsyncClient() as http:
            assert (await http.put(f"{child.url}/tables/t", json=table)).status_code == 200
        poller = Poller(
            replay_url=child.url,
            learner_url=f"http://127.0.0.1:{free_port()}",  # nobody there: reads as None
            actor_urls={},
            evaluator_url=None,
            headers={},
        )
        snapshot = await poller.poll(1.0)
        await poller.aclose()
        assert snapshot.learner is None
        assert snapshot.replay_size == 0
        assert snapshot.waiting() == (0, 0)
        assert [t["name"] for t in snapshot.tables or []] == ["t"]

        console = Console(record=True, width=120)
        assert await asyncio.to_thread(print_status, child.url, console=console) == 0
        assert "tables" in console.export_text() or "status" in console.export_text()
    finally:
        await stop_children([[child]], grace_s=10)
    assert child.returncode() is not None
    assert alive_in_groups({child.pid}) == []
    assert "Finished server process" in child.log_tail()  # SIGTERM came first: a clean stop


def test_status_of_nothing_fails_with_the_reason() -> None:
    console = Console(record=True, width=200)
    url = f"127.0.0.1:{free_port()}"
    assert print_status(url, console=console) == 1
    assert f"http://{url}/status did not answer" in console.export_text()
    assert status_url("http://h:1/") == "http://h:1/status"
    assert status_url("http://h:1/status") == "http://h:1/status"


def test_child_env_drops_the_shells_service_settings() -> None:
    env = child_env(
        {"PORT": "1"},
        base={"PATH": "/bin", "REDIS_URL": "redis://elsewhere", "SEED": "7"},
        threads={"OMP_NUM_THREADS": "1"},
    )
    assert env == {"PATH": "/bin", "PORT": "1", "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def test_tables_are_read_in_every_shape() -> None:
    one = {"size": 3, "rate_limiter": {"waiting_inserts": 1, "waiting_samples": 2}}
    for body in ([{"name": "a", **one}], {"tables": [{"name": "a", **one}]}, {"a": one}):
        tables = table_infos(body)
        assert tables == [{"name": "a", **one}]
        snapshot = Snapshot(wall_s=0.0, tables=tables)
        assert snapshot.replay_size == 3
        assert snapshot.waiting() == (1, 2)


def test_progress_csv_and_plot(tmp_path: Path) -> None:
    log = ProgressLog(tmp_path / "progress.csv")
    log.record(Snapshot(wall_s=0.5))  # no learner yet: no row
    for i in range(1, 6):
        learner = {
            "actor_steps": 1000 * i,
            "learner_steps": 50 * i,
            "episodes": 10 * i,
            "return_mean_100": 20.0 * i,
            "eval_return_mean": None if i < 3 else 100.0 * i,
            "param_version": 5 * i,
        }
        log.record(Snapshot(wall_s=float(i), learner=learner, actors={"actor-0": {"steps": 10}}))
    log.close()
    rows = read_progress(tmp_path / "progress.csv")
    assert len(rows) == 5
    assert set(rows[0]) == set(PROGRESS_COLUMNS)
    assert rows[0]["eval_return_mean"] is None
    assert rows[-1]["actor_steps"] == 5000  # the learner's count beats the live actor's 10
    png = plot_progress(tmp_path / "progress.csv", tmp_path / "progress.png", target=475)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
