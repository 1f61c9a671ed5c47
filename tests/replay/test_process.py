"""``python -m services.replay`` as a real process: clean SIGTERM, and 503 when Redis goes away."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import tempfile
import time

import numpy as np
import pytest

from shared.clients import ReplayClient, make_http_client
from shared.errors import ConnectionFailed, ServiceUnavailable
from tests.replay.util import items, table
from tests.support import ServiceProcess, free_port, wait_until


async def test_sigterm_stops_cleanly_even_with_a_waiting_sample() -> None:
    with ServiceProcess("replay", {"REDIS_URL": "", "RLFLEET_TOKEN": ""}) as service:
        async with make_http_client(service.url) as http:
            replay = ReplayClient(http, connect_retries=0)
            await replay.create_table("t", table())
            await replay.insert("t", data=items(range(3)))
            await replay.create_table("empty", table())
            waiting = asyncio.create_task(replay.sample("empty", 1, timeout_s=60))
            await asyncio.sleep(0.3)
            started = time.monotonic()
            code = await asyncio.to_thread(service.stop, 20)
            assert code == 0
            assert time.monotonic() - started < 15
            with pytest.raises((ServiceUnavailable, ConnectionFailed)):
                await waiting


@pytest.fixture
def private_redis():
    """A redis-server of our own, so the test can kill it."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail("redis-server is not on the PATH (apt-get install redis-server)")
    port = free_port()
    workdir = tempfile.mkdtemp(prefix="rlfleet-redis-")
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", workdir],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield proc, f"redis://127.0.0.1:{port}/0"
    finally:
        proc.kill()
        proc.wait(timeout=10)
        shutil.rmtree(workdir, ignore_errors=True)


async def test_healthz_is_503_while_redis_is_down(private_redis) -> None:
    proc, url = private_redis
    wait_until(lambda: _answers(url), timeout_s=10, what="private redis-server")
    with ServiceProcess("replay", {"REDIS_URL": url, "RLFLEET_TOKEN": ""}) as service:
        async with make_http_client(service.url) as http:
            replay = ReplayClient(http, connect_retries=0)
            await replay.create_table("t", table())
            await replay.insert("t", data={"x": np.arange(3)})
            proc.kill()
            proc.wait(timeout=10)
            response = await replay.request("GET", "/healthz")
            assert response.status_code == 503 and "detail" in response.json()
            with pytest.raises(ServiceUnavailable):
                await replay.sample("t", 1, timeout_s=1)


def _answers(url: str) -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(url).ping())
    except redis.ConnectionError:
        return False
