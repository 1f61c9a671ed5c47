"""``python -m bench.chaos``: a real training run under a scripted fault schedule.

    python -m bench.chaos                   # DQN on CartPole, every fault, then on to the target
    python -m bench.chaos --short           # the CI form (tests/bench/test_chaos.py): tiny agent
    python -m bench.chaos --json out.json   # the rows as JSON too

Redis (append-only file), the replay in Redis, the learner, two actors and an evaluator run as
processes, each in its own network namespace when this runs as root (bench/chaos/network.py),
restarted like compose's ``restart: unless-stopped`` (bench/chaos/fleet.py). Each fault of
bench/chaos/campaign.py is a row: acknowledged items and steps lost, the counters after recovery,
parameter versions monotone, seconds to recover, processes that crashed by themselves.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.chaos.campaign import Campaign, Row
from bench.chaos.fleet import EXPERIMENT, Plan, Supervisor, build
from bench.chaos.network import Network, netem_available, netns_available
from bench.chaos.observe import Observer
from bench.chaos.relay import Relay
from services.launcher.processes import default_jax_cache_dir

TINY = {"AGENT": "tests.agents.tiny", "ENV_ID": "CartPole-v1", "SEED": "0", "AGENT_CONFIG": "{}"}
START_TIMEOUT_S = 240.0


async def _until_target(obs: Observer, *, target_return: float | None, timeout_s: float) -> str:
    """Trains on after the faults until return_mean_100 reaches the target (or time runs out)."""
    started = obs.now()
    while obs.now() - started < timeout_s:
        snap = await obs.next_snapshot()
        learner = snap.learner or {}
        r100 = learner.get("return_mean_100")
        if target_return is None:
            if learner.get("phase") == "running":
                return f"yes (training, {learner.get('learner_steps')} learner steps)"
        elif r100 is not None and learner.get("episodes", 0) >= 100 and r100 >= target_return:
            return f"yes: return_mean_100 {r100:.0f} >= {target_return:.0f} at t={snap.t:.0f} s"
    last = (obs.snapshots[-1].learner or {}).get("return_mean_100") if obs.snapshots else None
    return f"no: return_mean_100 {last} after {timeout_s:.0f} s more"


async def campaign(args: argparse.Namespace) -> dict[str, Any]:
    isolated = not args.no_netns and netns_available()
    network = Network(isolated=isolated)
    run_dir = Path(args.run_dir or tempfile.mkdtemp(prefix="rlfleet-chaos-"))
    plan = Plan(
        run_dir=run_dir,
        agent=TINY if args.short else dict(EXPERIMENT),
        checkpoint_every_s=args.checkpoint_every_s,
        jax_cache_dir=default_jax_cache_dir(),
        actors=args.actors,
        evaluator=not args.no_evaluator,
        relayed="actor-1" if args.actors > 1 else None,
    )
    relays: dict[str, Relay] = {}
    supervisor = observer = None
    rows: list[Row] = []
    started = time.monotonic()
    try:
        procs, specs = build(plan, network)
        for spec in specs:
            relays[spec.name] = Relay(spec.listen, spec.target)
            await relays[spec.name].start()
        supervisor = Supervisor(network, procs)
        supervisor.start()
        observer = Observer(network, supervisor, plan.token)
        observer.start()
        chaos = Campaign(
            network,
            supervisor,
            observer,
            relays,
            hold_s=args.hold_s,
            short=args.short,
            only=args.only,
        )
        print(f"run in {run_dir}; hosts {'in network namespaces' if isolated else 'on loopback'}")
        up = await chaos.recovered(0.0, START_TIMEOUT_S)
        if up is None:
            raise RuntimeError(
                f"the run did not start training (still: {', '.join(chaos.stuck)});"
                f" logs in {run_dir}/logs"
            )
        print(f"training after {observer.now():.1f} s; faults:", flush=True)
        await asyncio.sleep(args.warmup_s)
        for fault in chaos.schedule():
            row = await chaos.run(fault)
            rows.append(row)
            print(_line(row), flush=True)
        target = await _until_target(
            observer,
            target_return=None if args.short else args.target_return,
            timeout_s=args.target_timeout_s,
        )
        final = observer.snapshots[-1]
        summary = {
            "insert_rate": _insert_rate(observer),
            "utc": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "load": os.getloadavg(),
            "wall_s": round(time.monotonic() - started, 1),
            "netns": isolated,
            "netem": netem_available(),
            "target": target,
            "acked_items": final.acked_items,
            "num_inserts": (final.table or {}).get("num_inserts"),
            "restarts": {p.name: p.starts - 1 for p in supervisor.procs.values()},
            "crashes": {p.name: p.crashes() for p in supervisor.procs.values() if p.crashes()},
            "rows": [r.as_dict() for r in rows],
        }
        return summary
    finally:
        if observer is not None:
            await observer.aclose()
        if supervisor is not None:
            await supervisor.aclose()
        for relay in relays.values():
            await relay.aclose()
        network.close()


def _insert_rate(obs: Observer) -> float | None:
    """Items per second the replay stored over the run's last 60 s (what 1 s of Redis holds)."""
    with_table = [s for s in obs.snapshots if s.table is not None]
    if len(with_table) < 2:
        return None
    last = with_table[-1]
    first = next(s for s in with_table if s.t >= last.t - 60.0)
    if last.t <= first.t:
        return None
    return round((last.table["num_inserts"] - first.table["num_inserts"]) / (last.t - first.t), 1)


def _line(row: Row) -> str:
    return (
        f"  {row.fault:<52} items lost {row.items_lost}, steps lost {row.steps_lost},"
        f" counters {row.counters}, versions {'monotone' if row.versions_monotone else 'WENT BACK'},"
        f" recovered in {row.recovery_s} s, crashes {row.crashes}"
        + (f" ({'; '.join(row.notes)})" if row.notes else "")
    )


def table(summary: dict[str, Any]) -> str:
    lines = [
        "| fault | acked items lost | acked steps lost | counters after recovery |"
        " versions monotone | recovery s | crashes | notes |",
        "|---|---:|---:|---|---|---:|---:|---|",
    ]
    for r in summary["rows"]:
        lines.append(
            f"| {r['fault']} | {r['items_lost']} | {r['steps_lost']} | {r['counters']} |"
            f" {'yes' if r['versions_monotone'] else 'NO'} | {r['recovery_s']} | {r['crashes']} |"
            f" {r['notes']} |"
        )
    load = ", ".join(f"{x:.2f}" for x in summary["load"])
    lines += [
        "",
        f"Target reached: {summary['target']}. Restarts: {summary['restarts']}; crashes:"
        f" {summary['crashes'] or 'none'}.",
        f"Acknowledged items (polled) {summary['acked_items']}, replay num_inserts"
        f" {summary['num_inserts']} (the difference: inserts stored whose answer was lost and"
        " sent again, and acknowledgements after the last poll of a killed actor).",
        f"The replay stored {summary['insert_rate']} items/s over the last 60 s: what one second"
        " of appendfsync everysec holds in the page cache only, lost if the machine fails.",
        f"{summary['utc']}, load average {load}, {summary['wall_s']} s wall;"
        f" network namespaces: {summary['netns']}, netem: {summary['netem']}.",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.chaos", description=__doc__)
    parser.add_argument("--short", action="store_true", help="the CI form: tiny agent, 4 faults")
    parser.add_argument("--hold-s", type=float, default=None, help="seconds a fault is held")
    parser.add_argument("--warmup-s", type=float, default=None)
    parser.add_argument("--checkpoint-every-s", type=float, default=30.0)
    parser.add_argument("--target-return", type=float, default=475.0)
    parser.add_argument("--target-timeout-s", type=float, default=None)
    parser.add_argument(
        "--only", action="append", help="run only the faults whose name starts so (repeatable)"
    )
    parser.add_argument("--actors", type=int, default=2)
    parser.add_argument("--no-evaluator", action="store_true")
    parser.add_argument("--no-netns", action="store_true", help="all hosts on loopback")
    parser.add_argument("--run-dir", default=None)
    parser.add_argument("--json", default=None, help="also write the summary here")
    args = parser.parse_args(argv)
    if args.hold_s is None:
        args.hold_s = 3.0 if args.short else 20.0
    if args.warmup_s is None:
        args.warmup_s = 1.0 if args.short else 10.0
    if args.target_timeout_s is None:
        args.target_timeout_s = 10.0 if args.short else 300.0
    summary = asyncio.run(campaign(args))
    print(table(summary))
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=1))
    failed = any(
        r["items_lost"] or r["steps_lost"] or not r["versions_monotone"] or r["recovery_s"] is None
        for r in summary["rows"]
    )
    return 1 if failed or summary["crashes"] else 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
