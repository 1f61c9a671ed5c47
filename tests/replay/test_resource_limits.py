"""Server-side resource limits (issue 9, "Load"): waiting requests capped per table, bodies that
trickle in answered 408. Real uvicorn servers over sockets; idle keep-alive connections, a setting
of the real process, are in tests/e2e/test_hardening.py."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from shared import codec
from tests.replay.util import items, table


async def test_a_flood_of_waiting_samples_is_capped_per_table(start_replay: Any) -> None:
    async with start_replay(max_waiters=3) as replay:
        await replay.create_table(
            "t", table(rate_limiter={"kind": "min_size", "min_size_to_sample": 5})
        )
        await replay.create_table("other", table())
        body = codec.encode({"batch_size": 1, "timeout_ms": 10_000})
        headers = {"Content-Type": codec.CONTENT_TYPE}

        def sample(name: str) -> Any:
            return replay.request("POST", f"/tables/{name}/sample", content=body, headers=headers)

        waiting = [asyncio.create_task(sample("t")) for _ in range(3)]
        deadline = time.monotonic() + 10
        while (await replay.info("t"))["rate_limiter"]["waiting_samples"] < 3:
            assert time.monotonic() < deadline, "the samples never started waiting"
            await asyncio.sleep(0.02)
        start = time.monotonic()
        flood = await asyncio.gather(*(sample("t") for _ in range(20)))
        assert time.monotonic() - start < 5  # answered at once, not after their timeout
        for response in flood:
            assert response.status_code == 429 and "MAX_WAITERS" in response.json()["detail"]
            assert response.headers["Retry-After"] == "1"
        await replay.insert("other", data=items([1]))  # the cap is per table
        assert len((await replay.sample("other", 1)).keys) == 1
        await replay.insert("t", data=items(range(5)))
        assert [r.status_code for r in await asyncio.gather(*waiting)] == [200, 200, 200]
        info = await replay.info("t")
        assert info["num_samples"] == 3 and info["rate_limiter"]["waiting_samples"] == 0


async def _raw(port: int, data: bytes) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    await writer.drain()
    return reader, writer


async def test_a_body_trickled_byte_by_byte_is_408(start_replay: Any) -> None:
    async with start_replay(body_timeout_s=0.5) as replay:
        await replay.create_table("t", table())
        port = int(replay.base_url.rsplit(":", 1)[1])
        payload = codec.encode({"columns": items([1, 2])})
        head = (
            f"POST /tables/t/insert HTTP/1.1\r\nHost: x\r\nContent-Type: {codec.CONTENT_TYPE}\r\n"
            f"Content-Length: {len(payload)}\r\n\r\n"
        ).encode()
        reader, writer = await _raw(port, head)
        start = time.monotonic()

        async def trickle() -> None:
            for byte in payload:
                writer.write(bytes([byte]))
                await writer.drain()
                await asyncio.sleep(0.1)

        sender = asyncio.create_task(trickle())
        answer = await asyncio.wait_for(reader.read(4096), timeout=5)
        elapsed = time.monotonic() - start
        sender.cancel()
        writer.close()
        assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
        assert b"BODY_TIMEOUT_S" in answer and 0.4 < elapsed < 3
        assert (await replay.info("t"))["size"] == 0  # nothing stored
