"""The actor's view of the learner's parameters (Acme's VariableClient, over HTTP).

Acting calls ``update(calls)`` after each policy call; every ``update_period`` calls wakes a
background task that asks ``GET /params`` with ``If-None-Match: "<version>"`` (a 304 carries no
body, but it is still a request: ~150 us of the actor's CPU with aiohttp). Acting never waits for it: it keeps using the parameters it has, also while the learner
is down. Only the very first parameters are awaited (``wait_first``).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import jax

from shared.clients import LearnerClient
from shared.errors import ConnectionFailed, NotFound, RlfleetError, ServiceUnavailable

log = logging.getLogger(__name__)

_UNREACHABLE = (ConnectionFailed, ServiceUnavailable)


class VariableClient:
    """Parameters pulled in the background; a ``shared.interfaces.VariableSource``."""

    def __init__(
        self,
        learner: LearnerClient,
        *,
        update_period: int,
        request_timeout_s: float = 30.0,
        max_backoff_s: float = 5.0,
    ) -> None:
        if update_period < 1:
            raise ValueError(f"update_period must be >= 1, got {update_period}")
        self._learner = learner
        self._period = update_period
        self._timeout_s = request_timeout_s
        self._max_backoff_s = max_backoff_s
        self._current: tuple[int, Any] | None = None  # swapped whole: readers see one pair
        self._last_request_call = 0
        self._pulling = False  # a pull was asked for and has not finished
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self.fetched = 0  # 200 answers
        self.not_modified = 0  # 304 answers
        self.last_error: str | None = None

    @property
    def version(self) -> int | None:
        return None if self._current is None else self._current[0]

    @property
    def params(self) -> Any:
        if self._current is None:
            raise RuntimeError("no parameters yet: await wait_first() first")
        return self._current[1]

    def get_variables(self) -> tuple[int, Any]:
        if self._current is None:
            raise RuntimeError("no parameters yet: await wait_first() first")
        return self._current

    def update(self, calls: int) -> None:
        """Called with the actor's policy-call count (Acme's clock), from any thread; never blocks.

        As in Acme, a pull is not asked for while the previous one is still going on.
        """
        if (
            calls - self._last_request_call >= self._period
            and not self._pulling
            and self._loop is not None
        ):
            self._last_request_call = calls
            self._pulling = True
            self._loop.call_soon_threadsafe(self._wake.set)

    async def wait_first(self, *, timeout_s: float | None = None) -> None:
        """Fetches until the learner answers with parameters (retrying with backoff)."""
        self._loop = asyncio.get_running_loop()
        async with asyncio.timeout(timeout_s):
            delay = 0.2
            while self._current is None:
                try:
                    await self._fetch()
                except (*_UNREACHABLE, NotFound) as e:
                    self.last_error = f"params: {e}"
                    log.info("waiting for the learner's first parameters: %s", e)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, self._max_backoff_s)

    def start(self) -> None:
        """Starts the background puller (after ``wait_first``)."""
        self._loop = asyncio.get_running_loop()
        self._task = asyncio.create_task(self._run(), name="variable-client")

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            try:
                await self._fetch()
            except RlfleetError as e:
                # Learner away (or answering nonsense): keep acting with the parameters we have;
                # the next update tries again.
                self.last_error = f"params: {e}"
                log.warning(
                    "could not pull parameters (acting goes on with version %s): %r",
                    self.version,
                    e,
                )
            finally:
                self._pulling = False

    async def _fetch(self) -> None:
        result = await self._learner.params(if_newer_than=self.version, timeout_s=self._timeout_s)
        self.last_error = None
        if result is None:
            self.not_modified += 1
            return
        self.fetched += 1
        if self.version is not None and result.version < self.version:
            log.warning(
                "learner went back from version %s to %s (restarted without its"
                " checkpoint?); using its parameters",
                self.version,
                result.version,
            )
        params = await asyncio.to_thread(jax.device_put, result.params)
        self._current = (result.version, params)
