"""Fixtures shared by the whole suite: a real redis-server, free ports, service processes."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator

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
