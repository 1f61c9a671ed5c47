"""Time to solve CartPole-v1 with the whole system: ``rlfleet run --until-return 475``.

Runs the launcher as a user would, once per seed, and reports the median of the wall seconds from
the command's start to ``return_mean_100 >= 475`` (the launcher's own clock, which starts before
anything is imported) and of the env steps it took, beside the figures the peers publish:

    python -m bench.system                      # seeds 0 1 2, writes docs/benchmarks.md
    python -m bench.system --seeds 0 --no-write -- --num-envs 8   # args after -- go to rlfleet run
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from rich.console import Console

from bench.report import Section, machine, markdown, now, print_sections, write_section
from services.launcher.processes import default_jax_cache_dir

ROOT = Path(__file__).resolve().parent.parent
TARGET_RETURN = 475.0
TARGET_SECONDS = 45.0
TARGET_STEPS = 100_000

# The peers' published time to solve CartPole-v1 (figures quoted in the project's issue).
PEERS = (
    ("cleanRL JAX DQN", 100.0, 413_000),
    ("RLlib DQN", 325.0, 75_000),
    ("RLlib PPO", 47.0, 88_000),
)


@dataclass(frozen=True)
class Attempt:
    seed: int
    solved: bool
    wall_s: float  # command start -> target reached (launcher's clock)
    process_s: float  # the whole command, shutdown included (measured here)
    env_steps: int
    learner_steps: int
    run_dir: Path
    cache: str  # "warm": JAX's compilation cache had entries before the run; "cold"; "off"
    cpu_s: float  # CPU seconds of every process of the run (services and launcher) to the stop


def run_once(seed: int, *, runs_dir: Path, max_seconds: float, extra: list[str]) -> Attempt:
    name = f"system-seed{seed}-{datetime.now():%Y%m%d-%H%M%S}"
    if "--no-jax-cache" in extra:
        cache = "off"
    else:
        directory = default_jax_cache_dir()
        if "--jax-cache-dir" in extra:
            directory = Path(extra[extra.index("--jax-cache-dir") + 1])
        cache = "warm" if directory.is_dir() and any(directory.iterdir()) else "cold"
    command = [
        sys.executable,
        "-m",
        "services.launcher.cli",
        "run",
        "--name",
        name,
        "--runs-dir",
        str(runs_dir),
        "--seed",
        str(seed),
        "--until-return",
        str(TARGET_RETURN),
        "--max-seconds",
        str(max_seconds),
        *extra,
    ]
    started = time.monotonic()
    subprocess.run(command, cwd=ROOT, stdin=subprocess.DEVNULL, check=False)
    process_s = time.monotonic() - started
    summary = json.loads((runs_dir / name / "summary.json").read_text())
    return Attempt(
        seed=seed,
        solved=bool(summary["solved"]),
        wall_s=float(summary["wall_s"]),
        process_s=process_s,
        env_steps=int(summary["env_steps"]),
        learner_steps=int(summary["learner_steps"]),
        run_dir=runs_dir / name,
        cache=cache,
        cpu_s=sum(v for v in summary.get("cpu_s", {}).values() if v),
    )


def sections(attempts: list[Attempt], extra: list[str], host: str) -> list[Section]:
    per_seed = Section(
        title="Time to solve CartPole-v1 (rlfleet run --actors 2 --until-return 475), per seed",
        columns=[
            "seed",
            "solved",
            "wall s",
            "whole command s",
            "CPU s",
            "env steps",
            "updates",
            "XLA cache",
        ],
        rows=[
            [
                str(a.seed),
                "yes" if a.solved else "no",
                f"{a.wall_s:.1f}",
                f"{a.process_s:.1f}",
                f"{a.cpu_s:.0f}",
                f"{a.env_steps:,}",
                f"{a.learner_steps:,}",
                a.cache,
            ]
            for a in attempts
        ],
        note="wall s: from the command's start to return_mean_100 >= 475, as the launcher"
        " measured it; whole command s adds the shutdown of the services. XLA cache: whether"
        " JAX's persistent compilation cache (the launcher's default) already held the"
        " services' programs; a cold start compiles them (a few CPU seconds per service)."
        " CPU s: user + system time of all the run's processes until the target, which depends"
        " much less than wall time on what else the machine runs; on an otherwise idle"
        " 2-core machine the wall time cannot be below CPU s / 2."
        + (f" Extra launcher arguments: `{' '.join(extra)}`." if extra else ""),
    )
    solved = [a for a in attempts if a.solved]
    wall = statistics.median(a.wall_s for a in attempts)
    steps = statistics.median(a.env_steps for a in attempts)
    cpu = statistics.median(a.cpu_s for a in attempts)
    wall_cell = f"{wall:.0f}" + (" PASS" if wall < TARGET_SECONDS else " FAIL")
    steps_cell = f"{steps / 1000:.0f}k" + (" PASS" if steps < TARGET_STEPS else " FAIL")
    comparison = Section(
        title="Time to solve CartPole-v1 beside the peers",
        columns=["system", "wall s", "env steps"],
        rows=[
            [
                f"rlfleet DQN, 2 actors (median of {len(attempts)} seeds, {len(solved)} solved)",
                wall_cell,
                steps_cell,
            ],
            *([name, f"{s:.0f}", f"{n / 1000:.0f}k"] for name, s, n in PEERS),
        ],
        note=f"Targets: under {TARGET_SECONDS:.0f} s and under {TARGET_STEPS // 1000}k env steps."
        f" Median CPU seconds of the run's processes: {cpu:.0f}."
        f" Peers' figures are theirs, on their hardware; ours ran on {host}, {now()}.",
    )
    return [comparison, per_seed]


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    extra: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, extra = argv[:cut], argv[cut + 1 :]
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--max-seconds", type=float, default=300.0, help="cap of each run")
    parser.add_argument("--runs-dir", type=Path, default=ROOT / "runs" / "bench")
    parser.add_argument("--no-write", action="store_true", help="do not touch docs/benchmarks.md")
    args = parser.parse_args(argv)
    console = Console()
    host = machine()  # with the load average before the runs
    attempts = []
    for seed in args.seeds:
        console.rule(f"seed {seed}")
        attempts.append(
            run_once(seed, runs_dir=args.runs_dir, max_seconds=args.max_seconds, extra=extra)
        )
    result = sections(attempts, extra, host)
    print_sections(console, result)
    if not args.no_write:
        write_section(ROOT / "docs" / "benchmarks.md", "system", markdown(result))
        console.print("written to docs/benchmarks.md (section bench:system)")
    return 0 if all(a.solved for a in attempts) else 1


if __name__ == "__main__":
    sys.exit(main())
