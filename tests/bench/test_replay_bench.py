"""The replay benchmark's harness: floors, rounds, ratios, the docs section writer."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from bench import replay, report
from bench.floors import RedisFloor
from bench.harness import ChildServer, Comparison, compare
from bench.replay_items import payloads
from bench.replay_stages import stages


def test_ratio_is_the_median_of_paired_rounds() -> None:
    c = Comparison({"a": [10.0, 30.0, 20.0], "b": [5.0, 10.0, 40.0]})
    assert c.median("a") == 20.0
    assert c.ratio("a", "b") == 2.0  # per-round 2.0, 3.0, 0.5


async def test_compare_interleaves_and_counts_items() -> None:
    calls: list[str] = []

    def op(name: str):
        async def run(i: int) -> int:
            calls.append(name)
            await asyncio.sleep(0.001)
            return 3

        return run

    result = await compare({"x": op("x"), "y": op("y")}, concurrency=2, rounds=2, duration_s=0.05)
    assert set(result.rates) == {"x", "y"} and all(len(r) == 2 for r in result.rates.values())
    assert all(rate > 0 for rates in result.rates.values() for rate in rates)
    assert calls[-1] == "x"  # the second round runs y first, then x


def test_write_section_replaces_only_its_own_block(tmp_path: Path) -> None:
    path = tmp_path / "benchmarks.md"
    report.write_section(path, "replay", "## Replay\nfirst")
    report.write_section(path, "system", "## System\nother")
    report.write_section(path, "replay", "## Replay\nsecond")
    text = path.read_text()
    assert text.startswith("# Benchmarks")
    assert "second" in text and "first" not in text and "## System\nother" in text
    assert text.count("<!-- bench:replay:start -->") == 1


def test_http_floor_echoes_and_replies_with_the_asked_size(tmp_path: Path) -> None:
    floor = ChildServer("bench.floors", {}, log_dir=tmp_path)
    floor.launch()
    try:
        floor.wait_ready(timeout_s=30)
        assert httpx.post(f"{floor.url}/echo", content=b"abc").content == b"abc"
        assert len(httpx.post(f"{floor.url}/reply/1000", content=b"x" * 50).content) == 1000
    finally:
        floor.stop()


async def test_redis_floor_moves_items(redis_url: str) -> None:
    floor = RedisFloor(redis_url, prefix="floor-test", ring_size=10)
    try:
        assert await floor.insert([b"a" * 44] * 4) == 4
        await floor.fill(b"b" * 44)
        assert await floor.sample(25) == 25
        await floor.clear()
        assert await floor.sample(5) == 0
    finally:
        await floor.aclose()


@pytest.mark.timeout(120)
def test_floors_only_run_prints_every_table(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--floors-only", "--rounds", "1", "--duration", "0.05", "--no-docs"]
    assert replay.main(argv) == 0
    out = capsys.readouterr().out
    for title in ("Throughput", "Targets", "Client transport"):
        assert title in out


async def test_stages_time_every_stage_of_the_memory_backend() -> None:
    big = next(p for p in payloads() if p.key == "64kb")
    figures = await stages(big, None, 1)
    for direction in ("insert", "sample"):
        row = figures[direction]
        assert row["redis-server: Lua script"] is None
        assert all(v is not None and v > 0 for k, v in row.items() if not k.startswith("redis"))
