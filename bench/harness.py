"""What every rlfleet benchmark needs: child servers, a private Redis, and interleaved rounds.

The machine is small and shared, so no absolute figure means much. Every figure is compared with a
baseline measured in the same run: the variants of one scenario run in short rounds, interleaved
(the order rotates each round), and a ratio is the median over rounds of the paired per-round
ratios, so that a slow patch of the machine hits both sides of a ratio alike.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import redis

ROOT = Path(__file__).resolve().parent.parent

Op = Callable[[int], Awaitable[int]]  # op(worker_index) -> items moved
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


class RunFailed(RuntimeError):
    """An ``rlfleet run`` ended without writing its summary (bad option, crash)."""


def run_launcher(
    command: Sequence[str], run_dir: Path, *, what: str, cwd: Path = ROOT, log: Path | None = None
) -> dict:
    """Runs one ``rlfleet run`` command to its end and returns its ``summary.json``.

    Its output goes to ``log`` (else to this terminal). A run that wrote no summary raises
    ``RunFailed`` naming ``what`` ran, the exit code and, from ``log``, the run's last words.
    """
    if log is None:
        done = subprocess.run(command, cwd=cwd, stdin=subprocess.DEVNULL, check=False)
        said = "its output is above"
    else:
        with open(log, "wb") as out:
            done = subprocess.run(
                command, cwd=cwd, stdin=subprocess.DEVNULL, stdout=out, stderr=out, check=False
            )
        said = " ".join(log.read_text(errors="replace").split())[-400:] or "(no output)"
    summary = run_dir / "summary.json"
    if not summary.exists():
        raise RunFailed(f"{what}: the run exited {done.returncode} with no summary: {said}")
    return json.loads(summary.read_text())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_until(predicate: Callable[[], bool], *, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise TimeoutError(f"timed out after {timeout_s}s waiting for {what}")


class ChildServer:
    """``python -m <module>`` on a free loopback port (HOST/PORT in its environment), with its
    output in ``log_path``; ready once ``GET /healthz`` answers 200."""

    def __init__(
        self,
        module: str,
        env: Mapping[str, str],
        *,
        log_dir: Path,
        unset: tuple[str, ...] = (),
    ) -> None:
        self.module = module
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        inherited = {k: v for k, v in os.environ.items() if k not in unset}
        self.env = {
            **inherited,
            "HOST": "127.0.0.1",
            "PORT": str(self.port),
            "LOG_LEVEL": "warning",
            **env,
        }
        self.log_path = log_dir / f"{module}-{self.port}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def launch(self) -> None:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", self.module],
                env=self.env,
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def wait_ready(self, *, timeout_s: float = 60.0) -> None:
        _wait_until(self._healthy, timeout_s=timeout_s, what=f"{self.module} at {self.url}")

    def _healthy(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            tail = self.log_path.read_text(errors="replace")[-2000:]
            raise RuntimeError(
                f"{self.module} exited with code {self.proc.returncode}; its log ends:\n{tail}"
            )
        try:
            return httpx.get(f"{self.url}/healthz", timeout=1.0).status_code == 200
        except httpx.HTTPError:
            return False

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def stop(self, timeout_s: float = 15.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)


class RedisServer:
    """A private ``redis-server`` (no persistence) on a free port."""

    def __init__(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError(
                "redis-server is not on the PATH (Debian/Ubuntu: apt-get install redis-server)"
            )
        self.binary = binary
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None
        self._dir = tempfile.mkdtemp(prefix="rlfleet-bench-redis-")

    def start(self) -> RedisServer:
        args = ["--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly"]
        args += ["no", "--dir", self._dir, "--loglevel", "warning"]
        self.proc = subprocess.Popen(
            [self.binary, *args],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis.from_url(self.url)
        _wait_until(lambda: _pings(client), timeout_s=10, what=f"redis-server on {self.port}")
        client.close()
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def used_memory(self) -> int:
        with redis.Redis.from_url(self.url) as client:
            return int(client.info("memory")["used_memory"])

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        shutil.rmtree(self._dir, ignore_errors=True)


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.ConnectionError:
        return False


def rss_bytes(pid: int) -> int:
    """Resident memory of ``pid`` and all its descendants (Linux /proc)."""
    total = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            total += int(line.split()[1]) * 1024
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            total += rss_bytes(int(child))
    return total


def cpu_seconds(pids: Sequence[int]) -> list[float]:
    """User + system CPU time each process of ``pids`` has used so far (Linux /proc)."""
    out = []
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        out.append((int(fields[11]) + int(fields[12])) / _CLOCK_TICKS)  # utime + stime
    return out


async def run_round(op: Op, *, concurrency: int, duration_s: float) -> tuple[int, float]:
    """``concurrency`` workers call ``op`` back to back for ``duration_s``; returns
    ``(items moved, seconds taken)``."""
    deadline = time.perf_counter() + duration_s

    async def worker(index: int) -> int:
        moved = 0
        while time.perf_counter() < deadline:
            moved += await op(index)
        return moved

    start = time.perf_counter()
    counts = await asyncio.wait_for(
        asyncio.gather(*(worker(i) for i in range(concurrency))), timeout=duration_s + 120.0
    )
    return sum(counts), time.perf_counter() - start


@dataclass
class Comparison:
    """Per-round rates (items/s) of each variant of one scenario, and the CPU time each used."""

    rates: dict[str, list[float]] = field(default_factory=dict)
    items: dict[str, int] = field(default_factory=dict)
    client_cpu_s: dict[str, float] = field(default_factory=dict)
    server_cpu_s: dict[str, list[float]] = field(default_factory=dict)  # per server process

    def median(self, variant: str) -> float:
        return statistics.median(self.rates[variant])

    def ratio(self, numerator: str, denominator: str) -> float:
        """Median over rounds of numerator/denominator measured in the same round."""
        pairs = zip(self.rates[numerator], self.rates[denominator], strict=True)
        return statistics.median(a / b for a, b in pairs)

    def cpu_per_item(self, variant: str) -> tuple[float, list[float]]:
        """CPU seconds per item over all timed rounds: (load generator, [each server process])."""
        n = max(1, self.items[variant])
        return self.client_cpu_s[variant] / n, [s / n for s in self.server_cpu_s[variant]]


async def compare(
    variants: Mapping[str, Op],
    *,
    concurrency: int,
    rounds: int,
    duration_s: float,
    servers: Mapping[str, Sequence[int]] | None = None,
) -> Comparison:
    """Runs each variant once to warm up, then ``rounds`` interleaved rounds in rotating order.

    ``servers`` names the processes (pids) that serve each variant, whose CPU time is recorded.
    """
    names = list(variants)
    servers = servers or {}
    for name in names:
        await run_round(variants[name], concurrency=concurrency, duration_s=duration_s / 4)
    result = Comparison(
        {name: [] for name in names},
        dict.fromkeys(names, 0),
        dict.fromkeys(names, 0.0),
        {name: [0.0] * len(servers.get(name, ())) for name in names},
    )
    for r in range(rounds):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            pids = servers.get(name, ())
            client_before, server_before = time.process_time(), cpu_seconds(pids)
            items, seconds = await run_round(
                variants[name], concurrency=concurrency, duration_s=duration_s
            )
            result.client_cpu_s[name] += time.process_time() - client_before
            used = zip(cpu_seconds(pids), server_before, strict=True)
            result.server_cpu_s[name] = [
                total + after - before
                for total, (after, before) in zip(result.server_cpu_s[name], used, strict=True)
            ]
            result.items[name] += items
            result.rates[name].append(items / seconds)
    return result
