"""Service child processes of a local run, and how they are stopped.

Every child runs ``python -m services.<name>`` (the container's command) in its own process group,
with stdout and stderr in ``logs/<name>.log``. Two guarantees keep a run from leaving processes
behind:

- the launcher stops children by process group: SIGTERM, then SIGKILL after a grace period;
- on Linux each child asks the kernel (``prctl(PR_SET_PDEATHSIG, SIGKILL)``) to be killed when the
  launcher dies, so even ``kill -9`` of the launcher takes its children with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from shared.runtime import child_preexec

# Settings the services read from the environment. A child gets only the ones the launcher sets, so
# a stray REDIS_URL in the user's shell cannot switch a memory run to Redis.
SERVICE_SETTINGS = (
    "HOST",
    "PORT",
    "REDIS_URL",
    "MAX_BODY_BYTES",
    "REPLAY_URL",
    "LEARNER_URL",
    "AGENT",
    "ENV_ID",
    "SEED",
    "CHECKPOINT_DIR",
    "AGENT_CONFIG",
    "RUN_DIR",
    "CHECKPOINT_EVERY_S",
    "CHECKPOINT_KEEP",
    "ACTOR_ID",
    "NUM_ENVS",
    "ROLE",
    "ACTOR_INDEX",
    "NUM_ACTORS",
)

# One core per process is the right default on a small machine running five processes: XLA's and
# BLAS's own thread pools would otherwise oversubscribe the cores (measured in docs/launcher.md).
SINGLE_THREADED = {
    "XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1",
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
}


def default_jax_cache_dir() -> Path:
    """Where compiled XLA programs are kept between runs: ``$XDG_CACHE_HOME/rlfleet/jax``."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "rlfleet" / "jax"


def jax_cache_env(directory: Path) -> dict[str, str]:
    """JAX's persistent compilation cache in ``directory``, for every program however small.

    Compiling the learner's update and the actors' policy is most of a service's start-up CPU
    (about 7 of the learner's 10 CPU seconds); a warm cache skips it (docs/launcher.md). The cache
    key covers JAX's version, the backend and XLA_FLAGS; an unreadable entry is recompiled.
    """
    return {
        "JAX_COMPILATION_CACHE_DIR": str(directory),
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
        "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0",
    }


def free_port() -> int:
    """A TCP port that was free on loopback a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Child:
    """One service process: ``python -m services.<module>`` on ``port``."""

    name: str  # unique in the run: "replay", "learner", "actor-0", "evaluator"
    module: str  # "replay", "learner" or "actor"
    port: int
    env: dict[str, str]
    log_path: Path
    nice: int = 0  # added to the launcher's niceness: > 0 yields the CPU to the others
    proc: subprocess.Popen | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, cwd: Path | None = None) -> None:
        """Starts the process. Call from the main thread: PDEATHSIG fires when the forking
        thread, not the process, exits."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", f"services.{self.module}"],
                env=self.env,
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                process_group=0,
                preexec_fn=child_preexec(self.nice),
            )

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def returncode(self) -> int | None:
        """None while running (or never started), else the exit code (negative: killed by
        that signal)."""
        return self.proc.poll() if self.proc else None

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal_group(self, sig: signal.Signals) -> None:
        """Sends ``sig`` to the child's whole process group (it and anything it started)."""
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, sig)

    def cpu_seconds(self) -> float | None:
        """User + system CPU time the process has used so far (Linux; None elsewhere or when
        it is gone)."""
        if self.proc is None:
            return None
        try:
            with open(f"/proc/{self.proc.pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            return None
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def child_env(
    settings: Mapping[str, str],
    *,
    base: Mapping[str, str] | None = None,
    threads: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The environment of one child: the launcher's own, without any service setting, plus
    the thread limits and ``settings``."""
    env = {k: v for k, v in (os.environ if base is None else base).items()}
    for key in SERVICE_SETTINGS:
        env.pop(key, None)
    env.update(SINGLE_THREADED if threads is None else threads)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(settings)
    return env


async def wait_healthy(child: Child, *, timeout_s: float, headers: Mapping[str, str]) -> None:
    """Waits until ``GET /healthz`` answers 200; raises if the child exits or time runs out."""
    deadline = time.monotonic() + timeout_s
    async with httpx.AsyncClient(timeout=1.0, headers=dict(headers)) as http:
        while time.monotonic() < deadline:
            if not child.running():
                raise ChildExited(child)
            try:
                if (await http.get(f"{child.url}/healthz")).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.05)
    raise TimeoutError(f"{child.name} did not answer /healthz at {child.url} within {timeout_s}s")


class ChildExited(RuntimeError):
    """A service process ended while the run still needed it."""

    def __init__(self, child: Child) -> None:
        self.child = child
        super().__init__(f"{child.name} exited with code {child.returncode()}")


async def stop_children(
    tiers: Iterable[Iterable[Child]],
    *,
    grace_s: float,
    force: asyncio.Event | None = None,
) -> None:
    """Stops children tier by tier (actors, then learner, then replay): SIGTERM to each process
    group, SIGKILL to the groups still alive after ``grace_s`` (at once when ``force`` is set),
    and a final SIGKILL to each group for anything a child left behind."""
    for tier in tiers:
        tier = [c for c in tier if c.proc is not None]
        for child in tier:
            if child.running():
                child.signal_group(signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        while any(c.running() for c in tier) and time.monotonic() < deadline:
            if force is not None and force.is_set():
                break
            await asyncio.sleep(0.05)
        for child in tier:
            child.signal_group(signal.SIGKILL)
            if child.proc is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    await asyncio.to_thread(child.proc.wait, 10.0)
