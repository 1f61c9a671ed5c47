"""The processes of the campaign's training run, restarted as compose's restart policy would.

redis-server (append-only file), the replay (tables in Redis), the learner (checkpoints), two
actors and an evaluator, each in its own host (bench/chaos/network.py), with the settings
docker-compose.yml gives them. ``Supervisor`` is Docker's ``restart: unless-stopped``: a process
that exits, however, is started again after a back-off that starts at 100 ms and doubles (reset
once it ran 10 s), as the Docker daemon does. A process the campaign stopped with SIGSTOP is not
restarted: Docker would not notice either.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.chaos.network import Network
from services.launcher.processes import child_env, free_port, jax_cache_env
from shared.runtime import child_preexec

ROOT = Path(__file__).resolve().parents[2]
EXPERIMENT = {  # docker-compose.yml's x-experiment
    "AGENT": "dqn",
    "ENV_ID": "CartPole-v1",
    "SEED": "0",
    "AGENT_CONFIG": json.dumps(
        {
            "n_step": 3,
            "batch_size": 128,
            "learning_rate": 0.001,
            "min_replay_size": 1000,
            "samples_per_insert": 8.0,
            "epsilon_decay_steps": 10000,
        }
    ),
}
RESTART_BACKOFF_S = (0.1, 10.0)  # Docker's first delay, doubling; capped here at 10 s
RESET_AFTER_S = 10.0


@dataclass
class Proc:
    """One supervised process: its command, its host, its log; restarted when it exits."""

    name: str
    host: str
    argv: list[str]
    env: dict[str, str]
    port: int
    log_path: Path
    nice: int = 0
    proc: subprocess.Popen | None = None
    started_at: float = 0.0
    starts: int = 0
    exits: list[tuple[float, int]] = field(default_factory=list)  # (time, returncode)
    expected_kills: int = 0  # SIGKILLs the campaign sent: their exits are not crashes
    backoff_s: float = RESTART_BACKOFF_S[0]
    stopped: bool = False  # SIGSTOP'd by the campaign

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, network: Network) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                network.command(self.host, self.argv),
                env=self.env,
                cwd=ROOT,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                process_group=0,
                preexec_fn=child_preexec(self.nice),
            )
        self.started_at = time.monotonic()
        self.starts += 1

    def signal(self, sig: signal.Signals) -> None:
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)

    def wait(self, timeout_s: float) -> None:
        if self.proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout_s)

    def kill9(self) -> None:
        self.expected_kills += 1
        self.signal(signal.SIGKILL)

    def rss_bytes(self) -> int | None:
        try:
            with open(f"/proc/{self.pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1]) * 1024
        except (OSError, TypeError):
            return None
        return None

    def crashes(self) -> list[int]:
        """Exit codes of exits the campaign did not cause (SIGKILL'd exits are -9)."""
        kills = self.expected_kills
        out = []
        for _, code in self.exits:
            if code == -signal.SIGKILL and kills > 0:
                kills -= 1
            else:
                out.append(code)
        return out


class Supervisor:
    """Starts the processes and restarts whichever exits (compose's ``unless-stopped``)."""

    def __init__(self, network: Network, procs: list[Proc]) -> None:
        self.network = network
        self.procs = {p.name: p for p in procs}
        self._task: asyncio.Task | None = None
        self._closing = False

    def __getitem__(self, name: str) -> Proc:
        return self.procs[name]

    def start(self) -> None:
        for proc in self.procs.values():
            proc.start(self.network)
        self._task = asyncio.create_task(self._watch(), name="supervisor")

    async def _watch(self) -> None:
        due: dict[str, float] = {}
        while not self._closing:
            now = time.monotonic()
            for proc in self.procs.values():
                if proc.proc is None or proc.running():
                    continue
                if proc.name not in due:
                    proc.exits.append((now, proc.proc.returncode))
                    if now - proc.started_at > RESET_AFTER_S:
                        proc.backoff_s = RESTART_BACKOFF_S[0]
                    due[proc.name] = now + proc.backoff_s
                    proc.backoff_s = min(proc.backoff_s * 2, RESTART_BACKOFF_S[1])
                elif now >= due[proc.name]:
                    del due[proc.name]
                    proc.start(self.network)
            await asyncio.sleep(0.05)

    async def aclose(self, grace_s: float = 10.0) -> None:
        """Stops everything: actors first, then the learner, the replay and Redis."""
        self._closing = True
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        order = [
            [p for p in self.procs.values() if p.name.startswith(("actor", "evaluator"))],
            [self.procs[n] for n in ("learner",) if n in self.procs],
            [self.procs[n] for n in ("replay",) if n in self.procs],
            [self.procs[n] for n in ("redis",) if n in self.procs],
        ]
        for tier in order:
            for p in tier:
                p.signal(signal.SIGCONT)
                p.signal(signal.SIGTERM)
            await asyncio.gather(*(asyncio.to_thread(p.wait, grace_s) for p in tier))
            for p in tier:
                p.signal(signal.SIGKILL)
                if p.proc is not None:
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        await asyncio.to_thread(p.proc.wait, 10.0)


@dataclass(frozen=True)
class Plan:
    """What to run: the hosts and settings of each process."""

    run_dir: Path
    actors: int = 2
    fsync: str = "always"
    agent: dict[str, str] = field(default_factory=lambda: dict(EXPERIMENT))
    checkpoint_every_s: float = 30.0
    jax_cache_dir: Path | None = None
    token: str = "chaos-token"
    relayed: str | None = "actor-1"  # this actor reaches replay and learner through relays
    evaluator: bool = True


@dataclass(frozen=True)
class RelaySpec:
    """A relay the campaign runs: ``listen`` (in the root namespace) forwards to ``target``."""

    name: str  # "actor-1>replay"
    listen: tuple[str, int]
    target: tuple[str, int]


def build(plan: Plan, network: Network) -> tuple[list[Proc], list[RelaySpec]]:
    """The processes of ``plan`` (not started) and the relays; hosts are added to ``network``."""
    logs = plan.run_dir / "logs"
    names = ["redis", "replay", "learner", *[f"actor-{i}" for i in range(plan.actors)]]
    names += ["evaluator"] if plan.evaluator else []
    for name in names:
        network.add_host(name)
    ports = {"redis": 6379, "replay": 8000, "learner": 8001}
    if not network.isolated:  # all on loopback: ports must differ
        ports = {name: free_port() for name in names}

    def port(name: str) -> int:
        return ports.get(name, 8002)  # every actor listens on compose's 8002 in its own host

    def url(name: str) -> str:
        return f"http://{network.address(name)}:{port(name)}"

    common = {"LOG_LEVEL": "info", "RLFLEET_TOKEN": plan.token}
    if plan.jax_cache_dir is not None:
        common.update(jax_cache_env(plan.jax_cache_dir.resolve()))

    def service(name: str, module: str, settings: dict[str, str], nice: int = 0) -> Proc:
        env = child_env(
            {**common, "HOST": network.address(name), "PORT": str(port(name)), **settings}
        )
        argv = [sys.executable, "-m", f"services.{module}"]
        return Proc(name, name, argv, env, port(name), logs / f"{name}.log", nice=nice)

    redis_dir = plan.run_dir / "redis"
    redis_dir.mkdir(parents=True, exist_ok=True)
    redis = Proc(
        "redis",
        "redis",
        [
            "redis-server",
            "--bind",
            network.address("redis"),
            "--port",
            str(port("redis")),
            "--appendonly",
            "yes",
            "--appendfsync",
            plan.fsync,
            "--save",
            "",
            "--dir",
            str(redis_dir.resolve()),
            "--protected-mode",
            "no",
        ],
        {"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
        port("redis"),
        logs / "redis.log",
    )
    procs = [
        redis,
        service(
            "replay",
            "replay",
            {"REDIS_URL": f"redis://{network.address('redis')}:{port('redis')}/0"},
        ),
        service(
            "learner",
            "learner",
            {
                **plan.agent,
                "REPLAY_URL": url("replay"),
                "CHECKPOINT_DIR": str((plan.run_dir / "checkpoints").resolve()),
                "CHECKPOINT_EVERY_S": str(plan.checkpoint_every_s),
                "RUN_DIR": str((plan.run_dir / "learner").resolve()),
            },
        ),
    ]
    relays: list[RelaySpec] = []

    def reach(actor: str, target: str) -> str:
        if actor != plan.relayed:
            return url(target)
        listen = (network.gateway(actor), free_port())
        relays.append(
            RelaySpec(f"{actor}>{target}", listen, (network.address(target), port(target)))
        )
        return f"http://{listen[0]}:{listen[1]}"

    for i in range(plan.actors):
        name = f"actor-{i}"
        procs.append(
            service(
                name,
                "actor",
                {
                    "ROLE": "actor",
                    "ACTOR_ID": name,
                    "ACTOR_INDEX": str(i),
                    "NUM_ACTORS": str(plan.actors),
                    "LEARNER_URL": reach(name, "learner"),
                    "REPLAY_URL": reach(name, "replay"),
                },
            )
        )
    if not plan.evaluator:
        return procs, relays
    procs.append(
        service(
            "evaluator",
            "actor",
            {
                "ROLE": "evaluator",
                "ACTOR_ID": "evaluator",
                "LEARNER_URL": url("learner"),
                "REPLAY_URL": url("replay"),
            },
            nice=10,
        )
    )
    return procs, relays


def service_url(network: Network, proc: Proc) -> str:
    return f"http://{network.address(proc.host)}:{proc.port}"
