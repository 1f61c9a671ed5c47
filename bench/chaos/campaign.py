"""The fault schedule and how each fault's recovery is measured.

One fault at a time, on a run that is training: inject, hold it ``hold_s``, heal (a kill heals
itself: the supervisor restarts the process), then wait until everything moves again. *Recovered*
means, measured from the heal: the learner is running and its step count grew, the replay's
num_inserts grew, every training actor's stored items grew (a restarted actor's too), the
evaluator stepped, and a new parameter version was published. The row of a fault holds the
ledger's worst figures over its window (bench/chaos/observe.py) and a settled count check at its
end.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from bench.chaos.fleet import Supervisor
from bench.chaos.network import Network
from bench.chaos.observe import Observer, Snapshot
from bench.chaos.relay import Relay

RECOVERY_TIMEOUT_S = 120.0
SHORT_RECOVERY_TIMEOUT_S = 50.0  # the CI form: a stuck part fails the test before its timeout
SETTLE_S = 2.0


@dataclass
class Fault:
    name: str
    inject: Callable[[], Awaitable[None] | None]
    heal: Callable[[], Awaitable[None] | None] | None = None  # None: a kill, the supervisor heals
    hold_s: float = 0.0
    needs_netns: bool = False


@dataclass
class Row:
    fault: str
    items_lost: int | None = None
    steps_lost: int | None = None
    counters: str = "?"
    versions_monotone: bool = True
    recovery_s: float | None = None
    crashes: int = 0
    # stored minus acknowledged over the window: duplicates, within the items in flight at its
    # two ends (hundreds under load, so only the run's total is printed)
    extra_inserts: int | None = None
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "notes": "; ".join(self.notes)}


async def _call(action: Callable[[], Awaitable[None] | None] | None) -> None:
    if action is None:
        return
    result = action()
    if result is not None:
        await result


class Campaign:
    def __init__(
        self,
        network: Network,
        supervisor: Supervisor,
        observer: Observer,
        relays: dict[str, Relay],
        *,
        hold_s: float,
        short: bool,
        only: list[str] | None = None,
    ) -> None:
        self.network = network
        self.sup = supervisor
        self.obs = observer
        self.relays = relays
        self.hold_s = hold_s
        self.short = short
        self.only = only
        self._counted: tuple[int, ...] = (0, 0, 0)  # learner - acknowledged, left by earlier rows
        self.stuck: list[str] = []  # what had not moved again when recovered() last looked

    # ---- the faults ----------------------------------------------------------------------------

    def _kill(self, name: str) -> Callable[[], None]:
        return lambda: self.sup[name].kill9()

    def _pause(self, name: str) -> tuple[Callable[[], None], Callable[[], None]]:
        proc = self.sup[name]

        def stop() -> None:
            proc.stopped = True
            proc.signal(signal.SIGSTOP)

        def cont() -> None:
            proc.signal(signal.SIGCONT)
            proc.stopped = False

        return stop, cont

    def _redis_fsync(self, mode: str) -> Callable[[], None]:
        def switch() -> None:
            redis = self.sup["redis"]
            argv = redis.argv
            argv[argv.index("--appendfsync") + 1] = mode  # the restart keeps the mode
            subprocess.run(
                self.network.command(
                    "redis",
                    [
                        "redis-cli",
                        "-h",
                        self.network.address("redis"),
                        "-p",
                        str(redis.port),
                        "config",
                        "set",
                        "appendfsync",
                        mode,
                    ],
                ),
                capture_output=True,
                check=True,
            )
            redis.kill9()

        return switch

    def _impair(self, **kw: float) -> tuple[Callable[[], None], Callable[[], None]]:
        def on() -> None:
            for relay in self.relays.values():
                relay.impair(**kw)

        def off() -> None:
            for relay in self.relays.values():
                relay.impair()

        return on, off

    def schedule(self) -> list[Fault]:
        hold = self.hold_s
        kills = [n for n in ("replay", "learner", "actor-0", "evaluator") if n in self.sup.procs]
        faults = [Fault(f"kill -9 {name}", self._kill(name)) for name in kills]  # --no-evaluator
        faults += [
            Fault("kill -9 redis-server (appendfsync always)", self._kill("redis")),
            Fault(f"SIGSTOP learner {hold:.0f} s", *self._pause("learner"), hold_s=hold),
            Fault(f"SIGSTOP replay {hold:.0f} s", *self._pause("replay"), hold_s=hold),
        ]
        for a, b in (("actor-0", "replay"), ("learner", "replay"), ("actor-0", "learner")):
            faults.append(
                Fault(
                    f"cut {a} <-> {b} {hold:.0f} s",
                    lambda a=a, b=b: self.network.cut(a, b),
                    lambda a=a, b=b: self.network.heal(a, b),
                    hold_s=hold,
                    needs_netns=True,
                )
            )
        if self.relays:
            faults.append(
                Fault(
                    f"latency 100 ms each way, actor-1's links, {hold:.0f} s",
                    *self._impair(delay_s=0.1),
                    hold_s=hold,
                )
            )
            faults.append(
                Fault(
                    f"loss 10% (200 ms RTO), actor-1's links, {hold:.0f} s",
                    *self._impair(loss=0.1),
                    hold_s=hold,
                )
            )
        faults.append(
            Fault("kill -9 redis-server (appendfsync everysec)", self._redis_fsync("everysec"))
        )
        if self.only:
            faults = [f for f in faults if f.name.startswith(tuple(self.only))]
        elif self.short:
            keep = ("kill -9 replay", "kill -9 redis-server (appendfsync always)", "SIGSTOP replay")
            keep += ("cut actor-0 <-> replay",)
            faults = [f for f in faults if f.name.startswith(keep)]
        if not self.network.isolated:
            faults = [f for f in faults if not f.needs_netns]
        return faults

    # ---- measuring -----------------------------------------------------------------------------

    async def run(self, fault: Fault) -> Row:
        row = Row(fault.name)
        obs = self.obs
        first = len(obs.snapshots)
        regressions = len(obs.ledger.version_regressions)
        crashes = sum(len(p.crashes()) for p in self.sup.procs.values())
        before = obs.snapshots[-1] if obs.snapshots else None
        await _call(fault.inject)
        if fault.hold_s:
            await asyncio.sleep(fault.hold_s)
        during = obs.snapshots[first:]
        if before is not None and during:
            row.notes.extend(_during(before, during, fault.hold_s))
            earlier = [x for x in obs.snapshots[:first] if x.t >= before.t - 10.0]
            if fault.hold_s:
                row.notes.append(_rates(earlier, during))
        await _call(fault.heal)
        healed = obs.now()
        limit = SHORT_RECOVERY_TIMEOUT_S if self.short else RECOVERY_TIMEOUT_S
        row.recovery_s = await self.recovered(healed, limit)
        if row.recovery_s is None:
            row.notes.append(f"never moved again: {', '.join(self.stuck) or '?'}")
        await asyncio.sleep(SETTLE_S / 4 if self.short else SETTLE_S)
        window = obs.snapshots[first:]
        row.items_lost = _worst(s.items_lost for s in window)
        row.extra_inserts = _extra(before, [s for s in window if s.table is not None])
        row.steps_lost = _worst(s.steps_lost for s in window)
        row.counters = await self.settled_counters()
        went_back = obs.ledger.version_regressions[regressions:]
        row.versions_monotone = not went_back
        row.notes.extend(f"{who}: version {old} -> {new}" for who, old, new in went_back[:3])
        row.crashes = sum(len(p.crashes()) for p in self.sup.procs.values()) - crashes
        return row

    async def recovered(self, healed: float, timeout_s: float = RECOVERY_TIMEOUT_S) -> float | None:
        """Seconds from ``healed`` until every part of the run moves again (None: never)."""
        firsts: dict[str, Any] = {}
        while self.obs.now() - healed < timeout_s:
            snap = await self.obs.next_snapshot()
            moved = {key: self._moved(key, value, firsts) for key, value in _progress(snap).items()}
            self.stuck = [key for key, ok in moved.items() if not ok]
            if not self.stuck:
                return round(snap.t - healed, 2)
        return None

    @staticmethod
    def _moved(key: str, value: Any, firsts: dict[str, Any]) -> bool:
        if value is None:
            return False
        ident, number = value
        if key not in firsts or firsts[key][0] != ident:
            firsts[key] = (ident, number)  # a new incarnation starts its own baseline
            return False
        return number > firsts[key][1]

    async def settled_counters(self, attempts: int = 40) -> str:
        """Learner's totals against the actors' acknowledged ones, when no report is in flight.

        Asks the actors, the learner, the actors again; when no actor's acknowledged figures
        moved in between, the comparison is exact. What this fault changed is shown: the
        difference left by earlier faults (a killed actor's last, unpolled report) is not
        counted again.
        """
        diff: tuple[int, ...] | None = None
        base, repeats = self._counted, 0
        for _ in range(attempts):
            before = await self.obs.acked_now()
            learner = await self.obs.learner_status()
            after = await self.obs.acked_now()
            if learner is None or before != after:
                await asyncio.sleep(0.1)
                continue
            held = (learner["actor_steps"], learner["episodes"], learner["eval_episodes"])
            total = tuple(int(h) - a for h, a in zip(held, before, strict=True))
            seen, diff = diff, tuple(t - b for t, b in zip(total, base, strict=True))
            if diff == (0, 0, 0):
                return "exact"
            repeats = repeats + 1 if diff == seen else 1
            if repeats >= 3:  # the same settled difference three times: it is there to stay
                break
            await asyncio.sleep(0.3)
        if diff is None:
            return "unsettled"
        self._counted = tuple(d + b for d, b in zip(diff, base, strict=True))
        return f"learner-acked steps {diff[0]:+d}, episodes {diff[1]:+d}, eval {diff[2]:+d}"


def _progress(snap: Snapshot) -> dict[str, tuple[Any, int] | None]:
    """What must grow after a fault, each with the incarnation it belongs to."""
    out: dict[str, tuple[Any, int] | None] = {}
    learner = snap.learner
    ok = learner is not None and learner.get("phase") == "running"
    pid = snap.pids
    out["learner_steps"] = (pid["learner"], int(learner["learner_steps"])) if ok else None
    out["param_version"] = (pid["learner"], int(learner["param_version"])) if ok else None
    table = snap.table
    out["num_inserts"] = (pid["replay"], int(table["num_inserts"])) if table else None
    for name, status in snap.actors.items():
        if status is None or status.get("state") != "acting":
            out[name] = None
        elif name == "evaluator":
            out[name] = (pid[name], int(status["steps"]))
        else:
            out[name] = (pid[name], int(status["inserted_items"]))
    return out


def _rates(earlier: list[Snapshot], during: list[Snapshot]) -> str:
    """Each training actor's stored items per second while the fault was held / before it."""

    def rate(snaps: list[Snapshot], name: str) -> str:
        points = [
            (s.t, s.actors[name]["inserted_items"], s.pids[name])
            for s in snaps
            if s.actors.get(name) is not None
        ]
        points = [p for p in points if p[2] == points[-1][2]] if points else []
        if len(points) < 2 or points[-1][0] <= points[0][0]:
            return "?"
        return f"{(points[-1][1] - points[0][1]) / (points[-1][0] - points[0][0]):.0f}"

    names = [n for n in during[-1].actors if n.startswith("actor")]
    return "items/s held/before: " + ", ".join(
        f"{n} {rate(during, n)}/{rate(earlier, n)}" for n in names
    )


def _extra(before: Snapshot | None, window: list[Snapshot]) -> int | None:
    """How much more the replay stored than was acknowledged over the window (within the items
    in flight at its two ends, a few hundred at most)."""
    if before is None or before.table is None or not window:
        return None

    def surplus(s: Snapshot) -> int:
        return int(s.table["num_inserts"]) - s.acked_items

    return surplus(window[-1]) - surplus(before)


def _worst(values: Any) -> int | None:
    seen = [v for v in values if v is not None]
    return max(seen) if seen else None


def _during(before: Snapshot, during: list[Snapshot], hold_s: float) -> list[str]:
    """For a held fault: how the actors behaved (memory, retries) while it lasted."""
    if not hold_s:
        return []
    notes = []
    growth = []
    for name, rss in before.rss.items():
        if name.startswith("actor") and rss:
            peak = max((s.rss.get(name) or 0) for s in during)
            growth.append(peak - rss)
    if growth:
        notes.append(f"actor RSS +{max(growth) / 2**20:.1f} MB at most")
    retries = 0
    for name in before.actors:
        old = (before.actors.get(name) or {}).get("insert_retries", 0)
        new = max(((s.actors.get(name) or {}).get("insert_retries", 0) for s in during), default=0)
        retries += max(0, new - old)
    notes.append(f"{retries / max(hold_s, 1e-9):.1f} insert retries/s")
    return notes
