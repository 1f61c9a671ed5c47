"""IMPALA's throughput through the services with 1, 2 and 4 actors, and a model for N cores.

    python -m bench.onpolicy [--actors 1 2 4] [--seconds 40] [--agent impala]   # docs/benchmarks.md

Part 1, the system: for each actor count, one ``rlfleet run --agent impala --actors N
--max-seconds S --no-evaluator`` (replay, learner with its sampler process, N actors: real
processes), all in this one invocation, one after the other. Rates are over the steady window of
``progress.csv``, from the first learner update plus ``--warmup`` seconds to the end: env steps/s
(all actors), learner unrolls/s (updates * batch_size) and the queue's mean fill (near the
queue's size: the learner is the bottleneck and actors wait; near 0: the actors are).

Part 2, the costs that the model is made of, measured in this process on the same machine:
- one actor's CPU per env step: ``ActingLoop`` (policy, gymnasium vector env, the agent's
  ``SequenceAdder``) for a few thousand steps, with fixed parameters, its items dropped;
- the learner's CPU per unroll: the jitted ``update`` on a batch of real unrolls (from that adder).
The model for a machine of N cores: the learner and its sampler take one core, each further core
runs one actor, so env steps/s = min((N - 1) / actor cost, unroll_length / learner cost per
unroll); on this 2-core machine shared with other work, the measured rates sit below it.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import numpy as np
from rich.console import Console

from bench.report import Section, machine, markdown, now, print_sections, si, write_section
from services.launcher.progress import read_progress

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs" / "benchmarks.md"


def run_system(args: argparse.Namespace, actors: int, runs_dir: Path) -> dict[str, float]:
    name = f"onpolicy-{args.agent}-{actors}actors-{datetime.now():%Y%m%d-%H%M%S}"
    command = [
        sys.executable,
        "-m",
        "services.launcher.cli",
        "run",
        "--name",
        name,
        "--runs-dir",
        str(runs_dir),
        "--agent",
        args.agent,
        "--actors",
        str(actors),
        "--max-seconds",
        str(args.seconds),
        "--no-evaluator",
        "--agent-config",
        args.agent_config,
    ]
    with open(runs_dir / f"{name}.out", "wb") as out:
        subprocess.run(command, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=out, stderr=out)
    rows = read_progress(runs_dir / name / "progress.csv")
    started = next((r["wall_s"] for r in rows if r["learner_steps"]), None)
    if started is None:
        return {"actors": actors, "env": 0.0, "unrolls": 0.0, "fill": 0.0, "window": 0.0}
    window = [r for r in rows if r["wall_s"] >= started + args.warmup] or rows[-2:]
    first, last = window[0], window[-1]
    span = max(last["wall_s"] - first["wall_s"], 1e-9)
    return {
        "actors": actors,
        "env": (last["actor_steps"] - first["actor_steps"]) / span,
        "unrolls": (last["learner_steps"] - first["learner_steps"]) * args.batch_size / span,
        "fill": statistics.mean(r["replay_size"] or 0.0 for r in window),
        "window": span,
    }


def measure_costs(args: argparse.Namespace) -> dict[str, float]:
    """Seconds of this process per env step of one actor and per unroll of the learner."""
    import jax

    from services.actor.environment import make_vector_env
    from services.actor.loop import ActingLoop
    from services.experiment import build_experiment
    from shared.interfaces import Batch, Batching, Placement

    experiment = build_experiment(
        args.agent, "CartPole-v1", overrides=json.loads(args.agent_config)
    )
    agent, fleet = experiment.agent, experiment.fleet
    state = agent.learner.init(jax.random.PRNGKey(0))
    params = agent.learner.params(state)
    items: list[dict[str, np.ndarray]] = []

    class Fixed:
        version = 1

        def __init__(self) -> None:
            self.params = params

        def update(self, calls: int) -> None: ...

    batching = Batching(fleet.insert_batch_size, None, time.monotonic)
    num_envs = fleet.num_envs
    adder = agent.make_adder({agent.learner.table: items.append}, num_envs, batching)
    env = make_vector_env("CartPole-v1", num_envs)
    loop = ActingLoop(
        env,
        agent.policy,
        Fixed(),
        adder,
        seed=0,
        placement=Placement(num_envs),
        record_version=True,
    )
    for _ in range(50):  # compile and warm up
        loop.step()
    calls = max(1, args.actor_steps // num_envs)
    started = time.process_time()
    for _ in range(calls):
        loop.step()
    actor_s = (time.process_time() - started) / (calls * num_envs)
    loop.close()
    columns = {k: np.concatenate([i[k] for i in items]) for k in items[0]}
    n = fleet.batch_size
    if len(columns["mask"]) < n:
        raise RuntimeError(f"only {len(columns['mask'])} unrolls for a batch of {n}")
    batch = Batch({k: v[:n] for k, v in columns.items()}, np.ones(n, np.float32))
    jax.block_until_ready(agent.learner.update(state, batch)[0])  # compile
    times = []
    for _ in range(args.learner_updates):
        started = time.process_time()
        jax.block_until_ready(agent.learner.update(state, batch)[0])
        times.append(time.process_time() - started)
    return {"actor_s": actor_s, "learner_s": statistics.median(times) / n}


def sections(
    args, runs: list[dict[str, float]], costs: dict[str, float], host: str
) -> list[Section]:
    unroll = args.unroll_length
    actor_rate, learner_rate = 1 / costs["actor_s"], unroll / costs["learner_s"]
    rows = []
    for r in runs:
        bound = (
            "learner (queue full)" if r["fill"] > 0.5 * args.queue_size else "actors (queue empty)"
        )
        rows.append(
            [
                str(int(r["actors"])),
                si(r["env"]),
                f"{r['unrolls']:.0f}",
                f"{r['fill']:.1f}",
                bound,
                f"{r['window']:.0f}",
            ]
        )
    command = f"python -m bench.onpolicy --actors {' '.join(map(str, args.actors))} --seconds {args.seconds}"
    system = Section(
        title=f"{args.agent} on CartPole-v1 through the services: throughput by actors",
        columns=[
            "actors",
            "env steps/s",
            "learner unrolls/s",
            f"queue fill (of {args.queue_size})",
            "what saturates",
            "window s",
        ],
        rows=rows,
        note=f"`{command}`, {now()}, {host}. Unrolls of {unroll} steps, batches of"
        f" {args.batch_size}; rates over the window after the first update + {args.warmup:g} s.",
    )
    model_rows = []
    for cores in (2, 4, 8, 16, 32):
        actors_cap = (cores - 1) * actor_rate
        model_rows.append(
            [
                str(cores),
                si(actors_cap),
                si(learner_rate),
                si(min(actors_cap, learner_rate)),
                "actors" if actors_cap < learner_rate else "learner",
            ]
        )
    model = Section(
        title=f"{args.agent}: a model for N cores (one for the learner, N - 1 actors)",
        columns=["cores", "actors' env steps/s", "learner's env steps/s", "env steps/s", "bound"],
        rows=model_rows,
        note=f"Measured in the same run, in the benchmark's process: one actor"
        f" {costs['actor_s'] * 1e6:.0f} µs CPU per env step ({si(actor_rate)}/s; policy, env and"
        f" adder), the learner {costs['learner_s'] * 1e3:.2f} ms CPU per unroll"
        f" ({si(unroll / costs['learner_s'])} env steps/s). Replay's per-item cost is left out:"
        " bench.replay measures hundreds of thousands of small items/s per core, and an unroll"
        " is one item.",
    )
    return [system, model]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--agent", default="impala")
    parser.add_argument("--actors", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--seconds", type=float, default=40.0, help="per actor count")
    parser.add_argument("--warmup", type=float, default=5.0, help="s after the first update")
    parser.add_argument("--agent-config", default="{}")
    parser.add_argument("--actor-steps", type=int, default=4000)
    parser.add_argument("--learner-updates", type=int, default=20)
    parser.add_argument("--runs-dir", type=Path, default=ROOT / "runs" / "bench-onpolicy")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    from services.experiment import build_experiment

    config = build_experiment(
        args.agent, "CartPole-v1", overrides=json.loads(args.agent_config)
    ).config
    args.unroll_length, args.batch_size = config.unroll_length, config.batch_size
    args.queue_size = config.queue_size
    console = Console()
    host = machine()
    args.runs_dir.mkdir(parents=True, exist_ok=True)
    runs = []
    for actors in args.actors:
        runs.append(run_system(args, actors, args.runs_dir))
        console.print(f"{actors} actor(s): {runs[-1]}", highlight=False)
    costs = measure_costs(args)
    result = sections(args, runs, costs, host)
    print_sections(console, result)
    if not args.no_write:
        write_section(
            DOCS,
            f"onpolicy:{args.agent}",
            f"## On-policy throughput ({args.agent})\n\n" + markdown(result),
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
