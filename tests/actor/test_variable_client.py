"""VariableClient against a real HTTP server that answers /params with ETag and 304."""

from __future__ import annotations

import asyncio

import jax
import numpy as np
import pytest

from services.actor.variable_client import VariableClient
from shared.clients import LearnerClient, make_http_client
from tests.actor.support import ParamServer, serve, wait_for
from tests.support import free_port


@pytest.fixture
async def server():
    params = ParamServer()
    async with serve(params.app()) as url:
        params.url = url
        yield params


async def test_pulls_every_update_period_steps_with_if_none_match(server):
    async with make_http_client(server.url) as http:
        client = VariableClient(LearnerClient(http), update_period=100)
        await client.wait_first(timeout_s=5)
        client.start()
        try:
            version, params = client.get_variables()
            assert version == 1
            assert isinstance(params["w"], jax.Array)
            np.testing.assert_array_equal(params["w"], np.ones((2, 3)))
            assert server.requests == [None]

            client.update(99)  # below the period: nothing
            await asyncio.sleep(0.1)
            assert len(server.requests) == 1

            client.update(100)
            await wait_for(lambda: client.not_modified == 1)
            assert server.requests[-1] == '"1"'
            assert client.version == 1

            server.version, server.params = 2, {"w": np.full((2, 3), 7.0, np.float32)}
            client.update(150)  # only 50 steps since the last pull
            await asyncio.sleep(0.1)
            assert client.version == 1
            client.update(200)
            await wait_for(lambda: client.version == 2)
            np.testing.assert_array_equal(client.params["w"], np.full((2, 3), 7.0))
            assert server.requests[-1] == '"1"'
            assert (client.fetched, client.not_modified) == (2, 1)
        finally:
            await client.aclose()


async def test_keeps_its_params_while_the_learner_fails(server):
    async with make_http_client(server.url) as http:
        client = VariableClient(LearnerClient(http), update_period=1)
        await client.wait_first(timeout_s=5)
        client.start()
        try:
            server.fail_with = 503
            server.version = 5
            client.update(1)
            await wait_for(lambda: client.last_error is not None)
            assert client.version == 1  # acting goes on with what it has
            server.fail_with = None
            client.update(2)
            await wait_for(lambda: client.version == 5)
            assert client.last_error is None  # it shows current trouble, not history
        finally:
            await client.aclose()


async def test_wait_first_retries_until_the_learner_is_up():
    port = free_port()
    params = ParamServer(version=3)
    async with make_http_client(f"http://127.0.0.1:{port}") as http:
        client = VariableClient(LearnerClient(http, connect_retries=0), update_period=10)
        waiting = asyncio.create_task(client.wait_first(timeout_s=10))
        await asyncio.sleep(0.5)  # connection refused meanwhile
        assert not waiting.done()
        assert client.last_error is not None
        params.fail_with = 503  # up, but no params published yet
        async with serve(params.app(), port=port):
            await wait_for(lambda: len(params.requests) >= 1)
            assert not waiting.done()
            params.fail_with = None
            await asyncio.wait_for(waiting, 10)
        assert client.version == 3


async def test_update_without_a_running_puller_never_blocks(server):
    async with make_http_client(server.url) as http:
        client = VariableClient(LearnerClient(http), update_period=1)
        client.update(10)  # before wait_first: ignored
        with pytest.raises(RuntimeError, match="wait_first"):
            client.get_variables()
        await client.aclose()
