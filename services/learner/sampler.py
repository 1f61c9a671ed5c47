"""The learner's sampler process: replay batches fetched outside the learner's GIL.

    learner process                                     sampler process (python -m ...sampler)
    update thread: reads a record  <-- stdout pipe --   PREFETCH tasks: POST /sample, copy the
                   uses slot s's arrays                 batch into shared-memory slot s, write
                   writes s back   -- stdin pipe -->    a record; a slot is reused once freed

Why a process: in one process the HTTP client's Python work (~0.4 ms per sample request) and the
update thread's dispatch of the jitted update take turns on the GIL, and the update waits for it:
bench.learner_feed measured the fed learner at 64-80% of the same loop fed from memory. Here the
update thread only reads a 16-byte record and the batch's arrays lie in shared memory (no copy,
no decoding), so prefetching hides the transport, as Reverb's C++ sampler threads do. PyTorch's
DataLoader workers are the same idea.

Slots: ``prefetch + 1`` shared-memory files (in /dev/shm, unlinked as soon as the child has mapped
them, so nothing is left behind even after a SIGKILL), each holding one sample request's arrays at fixed offsets
(the table's signature, ``batch_size`` items, plus keys and probabilities). Records on stdout are
``struct RECORD``: (kind, slot, table_size, detail_length) then ``detail_length`` bytes of UTF-8.
The child exits when its stdin closes (the learner stopped or died) and, on Linux, with its parent
(PDEATHSIG).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import mmap
import os
import select
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from shared.clients import ReplayClient, SampleBatch
from shared.errors import ConnectionFailed, NotFound, RateLimited, ServiceUnavailable
from shared.runtime import die_with_parent

log = logging.getLogger("rlfleet.learner.sampler")

RECORD = struct.Struct("<BBIxxI")  # kind, slot, table_size, (pad), detail length
BATCH, UNREACHABLE, NOT_FOUND, FAILED, READY = range(5)
START_TIMEOUT_S = 60.0
NICE = 5
SAMPLE_TIMEOUT_S = 2.0
MAX_BACKOFF_S = 5.0
# SampleBatch's own fields, beside the table's signature (``data``)
_EXTRA = {
    "keys": ("<u8", ()),
    "probabilities": ("<f8", ()),
    "priorities": ("<f8", ()),
    "times_sampled": ("<i8", ()),
}


@dataclass(frozen=True)
class Layout:
    """Where each array of a sample lies in a slot: name -> (dtype, shape, offset)."""

    fields: dict[str, tuple[str, tuple[int, ...], int]]
    nbytes: int

    @classmethod
    def of(cls, signature: dict[str, Any], batch_size: int) -> Layout:
        """The layout for ``batch_size`` items of a flat ``signature`` (leaf -> dtype, shape)."""
        specs = {k: (v["dtype"], tuple(v["shape"])) for k, v in signature.items()}
        fields, offset = {}, 0
        for name, (dtype, shape) in {**specs, **_EXTRA}.items():
            full = (batch_size, *shape)
            fields[name] = (dtype, full, offset)
            size = int(np.prod(full)) * np.dtype(dtype).itemsize
            offset += -(-size // 64) * 64  # each array 64-byte aligned
        return cls(fields, max(offset, 64))

    def views(self, buffer: memoryview) -> dict[str, np.ndarray]:
        return {
            name: np.ndarray(shape, dtype, buffer=buffer, offset=offset)
            for name, (dtype, shape, offset) in self.fields.items()
        }


def is_flat(signature: Any) -> bool:
    """Whether ``signature`` is a flat dict of leaves (what the sampler process supports)."""
    return isinstance(signature, dict) and all(
        isinstance(v, dict) and "dtype" in v and "shape" in v for v in signature.values()
    )


class SamplerProcess:
    """The learner's side: starts the child, hands out batches, takes slots back.

    ``get`` and ``release`` are called from the update thread only.
    """

    def __init__(
        self,
        *,
        replay_url: str,
        token: str | None,
        table: str,
        signature: dict[str, Any],
        batch_size: int,
        prefetch: int,
    ) -> None:
        self.layout = Layout.of(signature, batch_size)
        shm = "/dev/shm" if Path("/dev/shm").is_dir() else None
        # named by this process so that what a learner left is told apart from its neighbours'
        folder = Path(tempfile.mkdtemp(prefix=f"rlfleet-sampler-{os.getpid()}-", dir=shm))
        paths = [folder / f"slot-{i}" for i in range(prefetch + 1)]  # 1 in use, the rest filling
        self._maps = []
        for path in paths:
            with open(path, "w+b") as f:
                f.truncate(self.layout.nbytes)
                self._maps.append(mmap.mmap(f.fileno(), self.layout.nbytes))
        self._views = [self.layout.views(memoryview(m)) for m in self._maps]
        spec = {
            "replay_url": replay_url,
            "table": table,
            "batch_size": batch_size,
            "layout": {k: [d, list(s), o] for k, (d, s, o) in self.layout.fields.items()},
            "nbytes": self.layout.nbytes,
            "slots": [str(p) for p in paths],
        }
        env = {
            **os.environ,
            "RLFLEET_SAMPLER_SPEC": json.dumps(spec),
            "RLFLEET_PARENT_PID": str(os.getpid()),
        }
        if token:
            env["RLFLEET_TOKEN"] = token
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "services.learner.sampler"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
        )
        self._out = self._proc.stdout.fileno()
        self._buffer = b""
        self._paths, self._folder = paths, folder

    def wait_ready(self, timeout_s: float = START_TIMEOUT_S) -> None:
        """Blocks until the child has mapped the slots (then they are unlinked) and hands it all
        the slots. Raises RuntimeError if it does not start."""
        try:
            kind, _, _, detail = self.get(timeout_s)
            if kind != READY:
                raise RuntimeError(f"the sampler process did not start: {detail or kind}")
        finally:
            for path in self._paths:
                path.unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                self._folder.rmdir()
        for slot in range(len(self._paths)):
            self.release(slot)

    @property
    def pid(self) -> int:
        return self._proc.pid

    def get(self, timeout_s: float) -> tuple[int, int, SampleBatch | None, str]:
        """The next record: (kind, slot, batch if kind is BATCH, detail); kind -1 on timeout.

        A batch's arrays are views of its slot: valid until ``release(slot)``.
        """
        record = self._read(RECORD.size, timeout_s)
        if record is None:
            return -1, -1, None, ""
        kind, slot, table_size, length = RECORD.unpack(record)
        detail = self._read(length, None).decode() if length else ""
        if kind == BATCH:
            views = self._views[slot]
            data = {k: v for k, v in views.items() if k not in _EXTRA}
            batch = SampleBatch(
                **{name: views[name] for name in _EXTRA}, table_size=table_size, data=data
            )
            return kind, slot, batch, detail
        return kind, slot, None, detail

    def release(self, slot: int) -> None:
        """Gives ``slot`` back to the child to fill."""
        assert self._proc.stdin is not None
        with contextlib.suppress(BrokenPipeError):
            self._proc.stdin.write(bytes([slot]))
            self._proc.stdin.flush()

    def close(self, timeout_s: float = 5.0) -> None:
        """Stops the child (stdin EOF, then SIGTERM, then SIGKILL) and frees the shared memory."""
        with contextlib.suppress(BrokenPipeError, OSError):
            self._proc.stdin.close()
        try:
            self._proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self._proc.terminate()
            try:
                self._proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc.stdout.close()
        for path in self._paths:
            path.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            self._folder.rmdir()
        self._views = []
        for m in self._maps:
            with contextlib.suppress(BufferError):  # a batch still held: freed with it
                m.close()

    def _read(self, n: int, timeout_s: float | None) -> bytes | None:
        deadline = None if timeout_s is None else time.monotonic() + max(0.0, timeout_s)
        while len(self._buffer) < n:
            wait = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not select.select([self._out], [], [], wait)[0]:
                return None
            chunk = os.read(self._out, 65536)
            if not chunk:
                code = self._proc.poll()
                raise RuntimeError(f"the sampler process exited (code {code}); see its stderr")
            self._buffer += chunk
        out, self._buffer = self._buffer[:n], self._buffer[n:]
        return out


async def sample_patiently(
    replay: ReplayClient,
    table: str,
    batch_size: int,
    *,
    on_unreachable: Callable[[str], None],
    on_table_gone: Callable[[], Awaitable[None]],
) -> SampleBatch:
    """One batch, asked for until replay gives it: again at once after a 429 (the rate limiter
    held it for one long-poll), with backoff while replay is unreachable (``on_unreachable``) or
    the table is gone (after ``on_table_gone()``, which has it created again). Both feeds sample
    through this; a refusal (422, 401, 409) is raised."""
    delay = 0.1
    while True:
        try:
            return await replay.sample(table, batch_size, timeout_s=SAMPLE_TIMEOUT_S)
        except RateLimited:
            continue  # not enough data yet, or the sample/insert ratio holds us back
        except NotFound:
            await on_table_gone()
        except (ConnectionFailed, ServiceUnavailable) as e:
            on_unreachable(str(e))
        await asyncio.sleep(delay)
        delay = min(delay * 2, MAX_BACKOFF_S)


# ---- the child --------------------------------------------------------------------------------


def _map_slots(paths: list[str]) -> list[mmap.mmap]:
    maps = []
    for path in paths:
        with open(path, "r+b") as f:
            maps.append(mmap.mmap(f.fileno(), 0))
    return maps


async def _child(spec: dict[str, Any], token: str | None, maps: list[mmap.mmap]) -> None:
    from shared.clients import make_http_client

    fields = {k: (d, tuple(s), o) for k, (d, s, o) in spec["layout"].items()}
    layout = Layout(fields, nbytes=spec["nbytes"])
    views = [layout.views(memoryview(m)) for m in maps]
    free: asyncio.Queue[int] = asyncio.Queue()
    out = sys.stdout.buffer
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)

    def write(kind: int, slot: int = 0, table_size: int = 0, detail: str = "") -> None:
        raw = detail.encode()
        out.write(RECORD.pack(kind, slot, table_size, len(raw)) + raw)
        out.flush()

    async def read_free_slots() -> None:
        while chunk := await reader.read(256):
            for slot in chunk:
                free.put_nowait(slot)

    async def sample_forever(replay: ReplayClient) -> None:
        try:
            await sample_into_slots(replay)
        except Exception as e:  # a refusal (422, 401...) or a bug: the learner fails with it
            write(FAILED, detail=f"{type(e).__name__}: {e}")
            raise

    async def sample_into_slots(replay: ReplayClient) -> None:
        while True:
            slot = await free.get()

            async def table_gone(slot: int = slot) -> None:  # the learner creates it again
                write(NOT_FOUND, slot)

            batch = await sample_patiently(
                replay,
                spec["table"],
                spec["batch_size"],
                on_unreachable=lambda detail, slot=slot: write(UNREACHABLE, slot, detail=detail),
                on_table_gone=table_gone,
            )
            target = views[slot]
            for name, array in batch.data.items():
                target[name][...] = array
            for name in _EXTRA:
                target[name][...] = getattr(batch, name)
            write(BATCH, slot, batch.table_size)

    async with make_http_client(spec["replay_url"], token=token) as http:
        replay = ReplayClient(http)
        samplers = [asyncio.create_task(sample_forever(replay)) for _ in range(len(maps) - 1)]
        write(READY)
        try:
            await read_free_slots()  # until the learner closes our stdin
        finally:
            for task in samplers:
                task.cancel()
            await asyncio.gather(*samplers, return_exceptions=True)
            views.clear()
            for m in maps:
                with contextlib.suppress(BufferError):
                    m.close()


def main() -> None:
    from shared.runtime import configure_process

    die_with_parent(int(os.environ["RLFLEET_PARENT_PID"]))
    os.nice(NICE)  # the learner's update thread gets the CPU first; we only need to keep ahead
    configure_process(uses_jax=False)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    spec = json.loads(os.environ["RLFLEET_SAMPLER_SPEC"])
    try:
        import uvloop

        uvloop.run(_child(spec, os.environ.get("RLFLEET_TOKEN"), _map_slots(spec["slots"])))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
