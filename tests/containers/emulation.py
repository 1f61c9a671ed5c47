"""docker-compose.yml without Docker: read it as Compose does and run its services as processes.

There is no Docker engine on the machines that run the suite, so the compose file is proven the
next best way. :func:`tests.containers.compose.load_compose` reads it as Compose does, and
:class:`Emulation` starts every container as a local process with the command and environment
the file gives it:

- a private ``redis-server`` for the ``redis`` service (its own command line, its volume as dir);
- ``python -m services.<name>`` for the rlfleet services, ``python`` being this interpreter;
- each container gets a loopback port of its own (``PORT``), and a URL to another container
  (``http://replay:8000``) is rewritten to that container's port. A URL naming a service or a
  port that the file does not define is left alone and fails to connect, as it would in Docker;
- named volumes are folders under the work dir, and paths below a mount point are rewritten;
- replicas of a scaled service get distinct host names ``<project>-<service>-<n>`` as ACTOR_ID;
- ``depends_on`` conditions are waited for, health is the service's own health check (the
  compose file's ``test``, or else the image's ``HEALTHCHECK`` from the Dockerfile), and a
  container that exits is restarted when its ``restart`` policy says Docker would.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from services.launcher.processes import SERVICE_SETTINGS as LAUNCHER_SETTINGS
from tests.containers.compose import image_healthcheck, service_environment
from tests.support import ROOT, free_port

# Every setting the services read (the launcher's list, plus the two it passes through on purpose);
# none leaks in from the host.
SERVICE_SETTINGS = frozenset({*LAUNCHER_SETTINGS, "RLFLEET_TOKEN", "LOG_LEVEL"})
_URL_HOST_PORT = re.compile(r"(?<=://)(?P<host>[A-Za-z0-9._-]+):(?P<port>\d+)")


def _die_with_parent() -> Callable[[], None] | None:
    """``preexec_fn`` asking Linux to SIGKILL the child when the test process dies."""
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(None, use_errno=True)
    return lambda: libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


@dataclass
class Container:
    """One emulated container: a process with the service's command and environment."""

    service: str
    name: str
    argv: list[str]
    env: dict[str, str]
    cwd: Path
    port: int
    health_argv: list[str] | None
    log_path: Path
    http: bool = True
    proc: subprocess.Popen | None = None
    stopped: bool = False
    restarts: int = 0
    exit_codes: list[int] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                self.argv,
                env=self.env,
                cwd=self.cwd,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent(),
            )
        self.stopped = False

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def healthy(self) -> bool:
        """The health check, run like Docker runs it: inside the container, with its env.

        For an HTTP service a plain GET of /healthz goes first, so that the (slower) check
        command is not started over and over while the service is still coming up."""
        if not self.running() or self.health_argv is None:
            return False
        if self.http:
            try:
                if httpx.get(f"{self.url}/healthz", timeout=2).status_code != 200:
                    return False
            except httpx.HTTPError:
                return False
        try:
            done = subprocess.run(
                self.health_argv, env=self.env, cwd=self.cwd, capture_output=True, timeout=10
            )
        except subprocess.TimeoutExpired:
            return False
        return done.returncode == 0

    def signal(self, signum: int) -> None:
        if self.running():
            assert self.proc is not None
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signum)

    def stop(self, timeout_s: float = 20.0) -> None:
        """``docker stop``: SIGTERM, SIGKILL after the grace period; not restarted after."""
        self.stopped = True
        if self.proc is None:
            return
        self.signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def log_tail(self, chars: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:] if self.log_path.exists() else ""


class Emulation:
    """The compose project ``project`` as local processes under ``workdir``."""

    def __init__(self, compose: Mapping[str, Any], workdir: Path, *, project: str = "") -> None:
        self.compose = compose
        self.services: dict[str, dict[str, Any]] = dict(compose["services"])
        self.project = project or compose.get("name") or "project"
        self.workdir = workdir
        (workdir / "logs").mkdir(parents=True, exist_ok=True)
        self.volumes = {name: workdir / "volumes" / name for name in compose.get("volumes") or {}}
        for path in self.volumes.values():
            path.mkdir(parents=True, exist_ok=True)
        self.containers: dict[str, list[Container]] = {}
        # (host name, container port) -> loopback port; one entry per non-scaled service.
        self.addresses: dict[tuple[str, int], int] = {}

    # --- reading the file -----------------------------------------------------------------------
    def container_port(self, service: str) -> int:
        spec = self.services[service]
        if self._is_redis(spec):
            command = spec.get("command") or ["redis-server"]
            return int(command[command.index("--port") + 1]) if "--port" in command else 6379
        return int(service_environment(spec)["PORT"])

    @staticmethod
    def _is_redis(spec: Mapping[str, Any]) -> bool:
        return str(spec.get("image", "")).split(":")[0].split("/")[-1] == "redis"

    def mounts(self, service: str) -> dict[str, Path]:
        """Mount point in the container -> folder standing for the named volume."""
        out: dict[str, Path] = {}
        for entry in self.services[service].get("volumes") or []:
            source, target = entry.split(":")[:2]
            if source not in self.volumes:
                raise ValueError(f"{service}: volume {source!r} is not a named volume of the file")
            out[target] = self.volumes[source]
        return out

    def order(self) -> list[str]:
        """Services in dependency order (what ``depends_on`` names starts first)."""
        done: list[str] = []

        def visit(name: str, path: tuple[str, ...]) -> None:
            if name in done:
                return
            if name in path:
                raise ValueError(f"depends_on cycle: {' -> '.join((*path, name))}")
            for dep in self.services[name].get("depends_on") or {}:
                visit(dep, (*path, name))
            done.append(name)

        for name in self.services:
            visit(name, ())
        return done

    # --- building containers --------------------------------------------------------------------
    def _rewrite(self, value: str, mounts: Mapping[str, Path]) -> str:
        def address(m: re.Match[str]) -> str:
            port = self.addresses.get((m["host"], int(m["port"])))
            return f"127.0.0.1:{port}" if port else m.group(0)

        value = _URL_HOST_PORT.sub(address, value)
        for target, folder in mounts.items():
            if value == target or value.startswith(target.rstrip("/") + "/"):
                value = str(folder) + value[len(target.rstrip("/")) :]
        return value

    def _base_env(self) -> dict[str, str]:
        """The host's environment less the services' settings: a container has only its own."""
        compose_keys = {k for spec in self.services.values() for k in service_environment(spec)}
        drop = compose_keys | SERVICE_SETTINGS
        return {k: v for k, v in os.environ.items() if k not in drop}

    def _container(self, service: str, index: int, replicas: int) -> Container:
        spec = self.services[service]
        name = f"{self.project}-{service}-{index}"
        port = free_port()
        if replicas == 1:
            self.addresses[(service, self.container_port(service))] = port
        mounts = self.mounts(service)
        command = list(spec.get("command") or [])
        log_path = self.workdir / "logs" / f"{name}.log"
        if self._is_redis(spec):
            if command[:1] != ["redis-server"]:
                raise ValueError(f"{service}: expected a redis-server command, got {command}")
            data = mounts.get("/data", self.workdir / name)
            data.mkdir(parents=True, exist_ok=True)
            argv = [shutil.which("redis-server") or "redis-server", *command[1:]]
            argv += ["--port", str(port), "--bind", "127.0.0.1", "--dir", str(data)]
            test = (spec.get("healthcheck") or {}).get("test") or []
            health = None
            if test[:2] == ["CMD", "redis-cli"]:
                health = [shutil.which("redis-cli") or "redis-cli", "-p", str(port), *test[2:]]
            env = self._base_env()
            return Container(service, name, argv, env, data, port, health, log_path, http=False)
        if (
            len(command) != 3
            or command[:2] != ["python", "-m"]
            or not command[2].startswith("services.")
        ):
            raise ValueError(f"{service}: expected `python -m services.<name>`, got {command}")
        env = self._base_env()
        for key, value in service_environment(spec).items():
            env[key] = self._rewrite(value, mounts)
        env["HOST"] = "127.0.0.1"
        env["PORT"] = str(port)
        # Each container has a host name of its own, which actors take as their ACTOR_ID.
        env.setdefault("ACTOR_ID", name)
        test = (spec.get("healthcheck") or {}).get("test") or ["CMD", *image_healthcheck()]
        if test[0] != "CMD":
            raise ValueError(f"{service}: health check {test} is not exec form ['CMD', ...]")
        health = [sys.executable if a == "python" else a for a in test[1:]]
        argv = [sys.executable, *command[1:]]
        return Container(service, name, argv, env, ROOT, port, health, log_path)

    # --- running --------------------------------------------------------------------------------
    def up(self, scale: Mapping[str, int] | None = None, *, timeout_s: float = 120.0) -> None:
        """``docker compose up --scale ...``: start services in order, honouring depends_on."""
        scale = dict(scale or {})
        for service in self.order():
            for dep, cond in (self.services[service].get("depends_on") or {}).items():
                condition = (cond or {}).get("condition", "service_started")
                if condition == "service_healthy":
                    self.wait_healthy(dep, timeout_s=timeout_s)
                elif condition != "service_started":
                    raise NotImplementedError(f"depends_on condition {condition!r}")
            replicas = scale.get(service, 1)
            self.containers[service] = [
                self._container(service, i, replicas) for i in range(1, replicas + 1)
            ]
            for container in self.containers[service]:
                container.start()

    def all(self) -> list[Container]:
        return [c for group in self.containers.values() for c in group]

    def supervise(self) -> None:
        """Docker's restart policy: a container that exited is started again when it says so."""
        for container in self.all():
            if container.stopped or container.running() or container.proc is None:
                continue
            code = container.proc.returncode
            policy = str(self.services[container.service].get("restart", "no"))
            container.exit_codes.append(code)
            if policy in {"always", "unless-stopped"} or (
                policy.startswith("on-failure") and code != 0
            ):
                container.restarts += 1
                container.start()
            else:
                container.stopped = True

    def wait_healthy(self, service: str, *, timeout_s: float) -> None:
        """Until every container of ``service`` passes its health check (checked each second)."""
        self.wait_for(
            f"{service} to be healthy",
            lambda: all(c.healthy() for c in self.containers[service]),
            timeout_s=timeout_s,
            every_s=1.0,
        )

    def wait_for(
        self,
        what: str,
        predicate: Callable[[], bool],
        *,
        timeout_s: float,
        every_s: float = 0.5,
    ) -> None:
        """Polls ``predicate`` while supervising the containers; the logs on a timeout."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.supervise()
            if predicate():
                return
            time.sleep(every_s)
        raise TimeoutError(f"timed out after {timeout_s}s waiting for {what}\n{self.report()}")

    def report(self, *services: str) -> str:
        """State and log tail of the containers (of ``services``, or all): for failure messages."""
        lines = []
        for c in self.all():
            if services and c.service not in services:
                continue
            state = "running" if c.running() else f"exited {c.exit_codes or c.proc}"
            lines.append(f"--- {c.name} ({state}, restarts {c.restarts}) ---\n{c.log_tail()}")
        return "\n".join(lines)

    def down(self, timeout_s: float = 20.0) -> None:
        """``docker compose down``: a service stops once nothing that depends on it runs; the
        containers of the services that may stop together get SIGTERM together."""
        remaining = [s for s in self.order() if s in self.containers]
        while remaining:
            needed = {dep for s in remaining for dep in self.services[s].get("depends_on") or {}}
            wave = [s for s in remaining if s not in needed]
            group = [c for s in wave for c in self.containers[s]]
            for container in group:
                container.stopped = True
                container.signal(signal.SIGTERM)
            for container in group:
                container.stop(timeout_s)
            remaining = [s for s in remaining if s not in wave]
