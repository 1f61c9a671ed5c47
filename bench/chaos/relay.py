"""A TCP relay in the path of one link, for latency and loss where the kernel has no netem.

Every chunk read from one side is written to the other after ``delay_s`` (one way; a request and
its answer see it twice). Loss is emulated as TCP sees it: a lost segment is retransmitted after
the retransmission timeout (200 ms at least on Linux), so with probability ``loss`` a chunk waits
``RTO_S`` more. That is what loss costs a TCP connection (time, never bytes); what netem adds on
top (reordering, the congestion window shrinking) is not modelled. Chunks keep their order.
"""

from __future__ import annotations

import asyncio
import contextlib
import random

RTO_S = 0.2
CHUNK = 64 * 1024


class Relay:
    """Listens on ``listen`` and forwards each connection to ``target``."""

    def __init__(self, listen: tuple[str, int], target: tuple[str, int], *, seed: int = 0) -> None:
        self.listen = listen
        self.target = target
        self.delay_s = 0.0
        self.loss = 0.0
        self._rng = random.Random(seed)
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task] = set()
        self.connections = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, *self.listen)

    def impair(self, *, delay_s: float = 0.0, loss: float = 0.0) -> None:
        self.delay_s, self.loss = delay_s, loss

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        pipes = [
            asyncio.create_task(self._pipe(reader, up_writer)),
            asyncio.create_task(self._pipe(up_reader, writer)),
        ]
        self._tasks.update(pipes)
        try:
            await asyncio.wait(pipes, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in pipes:
                task.cancel()
            await asyncio.gather(*pipes, return_exceptions=True)
            self._tasks.difference_update(pipes)
            for w in (writer, up_writer):
                w.close()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Copies in order; each chunk is due ``delay`` (+ an RTO if 'lost') after it arrived."""
        loop = asyncio.get_running_loop()
        due: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def send() -> None:
            while True:
                at, chunk = await due.get()
                if not chunk:
                    return
                wait = at - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                writer.write(chunk)
                await writer.drain()

        sender = asyncio.create_task(send())
        try:
            while True:
                chunk = await reader.read(CHUNK)
                extra = RTO_S if chunk and self._rng.random() < self.loss else 0.0
                due.put_nowait((loop.time() + self.delay_s + extra, chunk))
                if not chunk:
                    break
            await sender
        except (ConnectionError, OSError):
            pass
        finally:
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionError, OSError):
                await sender

    async def aclose(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
