"""Each service in a network namespace of its own, as test hosts on one machine (Linux, root).

Host ``i`` is the namespace ``rlfc<tag>-<name>`` joined to the root namespace by a veth pair: the
root side is ``10.<tag>.<i>.1``, the host's side ``10.<tag>.<i>.2`` with its default route through
the root side (``tag`` is drawn from the process id, so two campaigns at once do not collide), and the root namespace forwards between hosts. The benchmark itself stays in the root
namespace and reaches every host directly.

A *link* between two hosts is cut by a blackhole route to each other's address in both
namespaces: packets vanish without an error, as in a real partition, and the other links stay up.
Latency and loss need ``tc qdisc ... netem``; where the kernel has no netem (this machine's has
none: "Specified qdisc kind is unknown") they are emulated by a TCP relay (bench/chaos/relay.py).
Without root or ``ip netns`` every host is 127.0.0.1 and links cannot be cut.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from dataclasses import dataclass, field

PREFIX = "rlfc"
FORWARD = "/proc/sys/net/ipv4/ip_forward"


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check)


def netns_available() -> bool:
    """Whether this process may create namespaces and veth pairs (root on Linux with iproute2)."""
    if os.geteuid() != 0 or shutil.which("ip") is None:
        return False
    probe = f"{PREFIX}probe{os.getpid()}"
    _ip("netns", "del", probe, check=False)
    ok = _ip("netns", "add", probe, check=False).returncode == 0
    _ip("netns", "del", probe, check=False)
    return ok


def netem_available() -> bool:
    """Whether ``tc qdisc add ... netem`` works (needs the sch_netem kernel module)."""
    if os.geteuid() != 0 or shutil.which("tc") is None:
        return False
    probe = "rlfcnetem0"
    if _ip("link", "add", probe, "type", "dummy", check=False).returncode != 0:
        return False
    try:
        added = subprocess.run(
            ["tc", "qdisc", "add", "dev", probe, "root", "netem", "delay", "1ms"],
            capture_output=True,
        )
        return added.returncode == 0
    finally:
        _ip("link", "del", probe, check=False)


@dataclass
class Network:
    """The hosts of one campaign; ``isolated`` False means all on loopback."""

    isolated: bool
    tag: int = field(default_factory=lambda: 100 + os.getpid() % 150)
    hosts: dict[str, int] = field(default_factory=dict)  # name -> index
    _cuts: set[tuple[str, str]] = field(default_factory=set)
    _forward_was: str | None = None

    def address(self, host: str) -> str:
        """Where ``host``'s services listen and are reached."""
        return f"10.{self.tag}.{self.hosts[host]}.2" if self.isolated else "127.0.0.1"

    def gateway(self, host: str) -> str:
        """The root namespace's address on ``host``'s link (where a relay for it listens)."""
        return f"10.{self.tag}.{self.hosts[host]}.1" if self.isolated else "127.0.0.1"

    def command(self, host: str, argv: list[str]) -> list[str]:
        """``argv`` run inside ``host``'s namespace."""
        return ["ip", "netns", "exec", self._ns(host), *argv] if self.isolated else argv

    def _ns(self, host: str) -> str:
        return f"{PREFIX}{self.tag}-{host}"

    def _veth(self, index: int, side: str) -> str:
        return f"rc{self.tag}x{index}{side}"  # under IFNAMSIZ (15)

    def add_host(self, host: str) -> None:
        index = len(self.hosts) + 1
        self.hosts[host] = index
        if not self.isolated:
            return
        ns, outside, inside = self._ns(host), self._veth(index, "h"), self._veth(index, "n")
        net = f"10.{self.tag}.{index}"
        _ip("netns", "del", ns, check=False)  # left by a campaign that was killed
        _ip("link", "del", outside, check=False)
        _ip("netns", "add", ns)
        _ip("link", "add", outside, "type", "veth", "peer", "name", inside)
        _ip("link", "set", inside, "netns", ns)
        _ip("addr", "add", f"{net}.1/24", "dev", outside)
        _ip("link", "set", outside, "up")
        _ip("-n", ns, "addr", "add", f"{net}.2/24", "dev", inside)
        _ip("-n", ns, "link", "set", inside, "up")
        _ip("-n", ns, "link", "set", "lo", "up")
        _ip("-n", ns, "route", "add", "default", "via", f"{net}.1")
        if self._forward_was is None:
            with open(FORWARD) as f:
                self._forward_was = f.read().strip()
            with open(FORWARD, "w") as f:
                f.write("1")

    def cut(self, a: str, b: str) -> None:
        """Drops every packet between hosts ``a`` and ``b`` (both ways), silently."""
        for here, there in ((a, b), (b, a)):
            _ip("-n", self._ns(here), "route", "add", "blackhole", f"{self.address(there)}/32")
        self._cuts.add((a, b))

    def heal(self, a: str, b: str) -> None:
        for here, there in ((a, b), (b, a)):
            _ip("-n", self._ns(here), "route", "del", "blackhole", f"{self.address(there)}/32")
        self._cuts.discard((a, b))

    def close(self) -> None:
        """Removes every namespace and link of the campaign and restores IP forwarding."""
        if not self.isolated:
            return
        for host, index in self.hosts.items():
            _ip("netns", "del", self._ns(host), check=False)
            _ip("link", "del", self._veth(index, "h"), check=False)
        others = _ip("netns", "list", check=False).stdout.split()
        if self._forward_was is not None and not any(n.startswith(PREFIX) for n in others):
            with contextlib.suppress(OSError), open(FORWARD, "w") as f:
                f.write(self._forward_was)  # unless another campaign still needs it
