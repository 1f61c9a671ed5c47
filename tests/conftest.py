"""Fixtures shared by the whole suite: a real redis-server, free ports, service processes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from tests.support import free_port, wait_until

HOW_TO_GET_REDIS = (
    "These tests need a real Redis. Install redis-server (Debian/Ubuntu: `apt-get install"
    " redis-server`; macOS: `brew install redis`) so the fixtures can start a private one, or set"
    " REDIS_URL=redis://host:port/db to a server the tests may use."
)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[str]:
    """The URL of a Redis server for the whole session: REDIS_URL's, or a private one."""
    url = os.environ.get("REDIS_URL")
    if url:
        try:
            redis.Redis.from_url(url).ping()
        except redis.RedisError as e:
            pytest.fail(f"REDIS_URL={url} does not answer ({e}). {HOW_TO_GET_REDIS}")
        yield url
        return
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail(f"redis-server is not on the PATH and REDIS_URL is unset. {HOW_TO_GET_REDIS}")
    port = free_port()
    workdir = tempfile.mkdtemp(prefix="rlfleet-redis-")
    proc = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            workdir,
            "--daemonize",
            "no",
            "--loglevel",
            "warning",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url)
    try:
        wait_until(lambda: _pings(client), timeout_s=10, what=f"redis-server on port {port}")
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(workdir, ignore_errors=True)


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.ConnectionError:
        return False


@pytest.fixture
def redis_url(redis_server: str) -> Iterator[str]:
    """A flushed database of the session's Redis, for one test."""
    client = redis.Redis.from_url(redis_server)
    client.flushdb()
    yield redis_server
    client.flushdb()
    client.close()


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """The fuzz counts (cases and failures per endpoint, tests/fuzz/harness.py); also written to
    ``FUZZ_REPORT`` (a JSON file) when that is set, as ``make fuzz`` does."""
    harness = sys.modules.get("tests.fuzz.harness")  # not imported: no fuzz test ran
    if harness is None or not harness.COUNTS:
        return
    COUNTS, EXAMPLES = harness.COUNTS, harness.EXAMPLES
    write = terminalreporter.write_line
    terminalreporter.section(f"fuzz: cases per endpoint (FUZZ_EXAMPLES={EXAMPLES})")
    for endpoint, counts in sorted(COUNTS.items()):
        statuses = " ".join(f"{k}:{v}" for k, v in sorted(counts.items()) if k.endswith("xx"))
        write(
            f"{endpoint:<62} {counts['cases']:>5} cases {counts['failures']:>2} failures  {statuses}"
        )
    total = sum(c["cases"] for c in COUNTS.values())
    failures = sum(c["failures"] for c in COUNTS.values())
    write(f"{'total':<62} {total:>5} cases {failures:>2} failures")
    path = os.environ.get("FUZZ_REPORT")
    if path:
        with open(path, "w") as f:
            json.dump(
                {"examples": EXAMPLES, "endpoints": {k: dict(v) for k, v in COUNTS.items()}},
                f,
                indent=1,
            )
