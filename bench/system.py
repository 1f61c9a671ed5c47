"""Time to solve CartPole-v1 with the whole system, through the services and in one process.

Runs ``rlfleet run --until-return 475`` as a user would, once per seed and variant, the variants
of a seed back to back in an order that rotates from seed to seed:

- ``services``: replay, learner, 2 actors and an evaluator as processes (``make run``);
- ``in-process``: the same agent, tables, learner update and acting loop in one process;
- ``no-evaluator`` (asked for by name): the services without the evaluator, to see whether it
  disturbs training;
- ``baseline`` (with ``--baseline REF``): the services of another commit (a git worktree),
  so that "before" and "after" a change are measured in the same run.

It reports, per variant, the median and the worst seed's wall seconds from the command's start
to ``return_mean_100 >= 475`` (the launcher's own clock, which starts before anything is
imported) and env steps, env steps/s while training, the worst / median env-steps ratio, the
ratio services / in-process per seed, and the peers' published figures:

    python -m bench.system --seeds 0 1 2 3 4 [--baseline bca9cce]    # writes docs/benchmarks.md
    python -m bench.system --seeds 0 --variants services --no-write -- --num-envs 8
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from rich.console import Console

from bench.harness import RunFailed, run_launcher
from bench.report import Section, machine, markdown, now, print_sections, write_section
from services.launcher.processes import default_jax_cache_dir
from services.launcher.progress import read_progress

ROOT = Path(__file__).resolve().parent.parent
TARGET_RETURN = 475.0
TARGET_SECONDS = 45.0
TARGET_STEPS = 100_000
MAX_SPREAD = 1.5  # worst seed's env steps / the median's

# The peers' published time to solve CartPole-v1 (figures quoted in the project's issue).
PEERS = (
    ("cleanRL JAX DQN", 100.0, 413_000),
    ("RLlib DQN", 325.0, 75_000),
    ("RLlib PPO", 47.0, 88_000),
)


@dataclass(frozen=True)
class Attempt:
    variant: str
    seed: int
    solved: bool
    wall_s: float  # command start -> target reached (launcher's clock)
    process_s: float  # the whole command, shutdown included (measured here)
    env_steps: int
    learner_steps: int
    steps_per_s: float  # env steps/s from the first env step to the stop
    run_dir: Path
    cache: str  # "warm": JAX's compilation cache had entries before the run; "cold"; "off"
    cpu_s: float  # CPU seconds of every process of the run (services and launcher) to the stop


def _cache(extra: list[str]) -> str:
    if "--no-jax-cache" in extra:
        return "off"
    directory = default_jax_cache_dir()
    if "--jax-cache-dir" in extra:
        directory = Path(extra[extra.index("--jax-cache-dir") + 1])
    return "warm" if directory.is_dir() and any(directory.iterdir()) else "cold"


def _training_rate(run_dir: Path) -> float:
    rows = [r for r in read_progress(run_dir / "progress.csv") if r["actor_steps"]]
    if len(rows) < 2 or rows[-1]["wall_s"] <= rows[0]["wall_s"]:
        return 0.0
    return (rows[-1]["actor_steps"] - rows[0]["actor_steps"]) / (
        rows[-1]["wall_s"] - rows[0]["wall_s"]
    )


def run_once(
    variant: str, seed: int, *, runs_dir: Path, max_seconds: float, extra: list[str], cwd: Path
) -> Attempt:
    name = f"system-{variant}-seed{seed}-{datetime.now():%Y%m%d-%H%M%S}"
    cache = _cache(extra)
    command = [
        sys.executable, "-m", "services.launcher.cli", "run", "--name", name,
        "--runs-dir", str(runs_dir), "--seed", str(seed),
        "--until-return", str(TARGET_RETURN), "--max-seconds", str(max_seconds), *extra,
    ]  # fmt: skip
    if variant == "in-process":
        command.append("--in-process")
    if variant == "no-evaluator":
        command.append("--no-evaluator")
    started = time.monotonic()
    summary = run_launcher(command, runs_dir / name, what=f"seed {seed}, {variant}", cwd=cwd)
    process_s = time.monotonic() - started
    return Attempt(
        variant=variant,
        seed=seed,
        solved=bool(summary["solved"]),
        wall_s=float(summary["wall_s"]),
        process_s=process_s,
        env_steps=int(summary["env_steps"]),
        learner_steps=int(summary["learner_steps"]),
        steps_per_s=_training_rate(runs_dir / name),
        run_dir=runs_dir / name,
        cache=cache,
        cpu_s=sum(v for v in summary.get("cpu_s", {}).values() if v),
    )


def baseline_checkout(ref: str) -> Path:
    """A git worktree of ``ref`` beside the project (made once, then reused)."""
    sha = subprocess.run(
        ["git", "rev-parse", "--short", ref], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()
    path = ROOT / "runs" / f"baseline-{sha}"
    if not path.exists():
        subprocess.run(["git", "worktree", "add", "--detach", str(path), sha], cwd=ROOT, check=True)
    return path


def _variant_row(label: str, attempts: list[Attempt]) -> list[str]:
    wall = [a.wall_s for a in attempts]
    steps = [a.env_steps for a in attempts]
    median_steps = statistics.median(steps)
    spread = max(steps) / median_steps
    solved = sum(a.solved for a in attempts)
    return [
        f"{label} ({solved}/{len(attempts)} solved)",
        f"{statistics.median(wall):.1f} / {max(wall):.1f}",
        f"{median_steps / 1000:.0f}k / {max(steps) / 1000:.0f}k",
        f"{spread:.2f}" + (" PASS" if spread <= MAX_SPREAD else " FAIL"),
        f"{statistics.median(a.steps_per_s for a in attempts):,.0f}",
        f"{statistics.median(a.cpu_s for a in attempts):.0f}",
    ]


def sections(
    attempts: list[Attempt], extra: list[str], host: str, ref: str | None
) -> list[Section]:
    by: dict[str, list[Attempt]] = {}
    for a in attempts:
        by.setdefault(a.variant, []).append(a)
    labels = {
        "services": "rlfleet DQN, services (2 actors + evaluator)",
        "in-process": "rlfleet DQN, in one process",
        "no-evaluator": "rlfleet DQN, services (2 actors, no evaluator)",
        "baseline": f"services at {ref} (before)",
    }
    variants = Section(
        title="Time to solve CartPole-v1: median / worst of the seeds",
        columns=[
            "variant",
            "wall s",
            "env steps",
            f"worst / median env steps (<= {MAX_SPREAD})",
            "env steps/s",
            "CPU s",
        ],
        rows=[_variant_row(labels[v], by[v]) for v in labels if v in by],
        note="wall s: from the command's start to return_mean_100 >= 475, as the launcher"
        " measured it (start-up included). env steps/s: from the first env step to the stop."
        " CPU s: user + system time of all the run's processes until the stop.",
    )
    out = [variants]
    if "services" in by and "in-process" in by:
        pairs = [
            (s, i)
            for s in by["services"]
            for i in by["in-process"]
            if s.seed == i.seed and s.solved and i.solved
        ]
        if pairs:
            out.append(
                Section(
                    title="Services / in-process, per seed (median)",
                    columns=["wall s", "env steps", "env steps/s"],
                    rows=[
                        [
                            f"{statistics.median(s.wall_s / i.wall_s for s, i in pairs):.2f}",
                            f"{statistics.median(s.env_steps / i.env_steps for s, i in pairs):.2f}",
                            f"{statistics.median(s.steps_per_s / i.steps_per_s for s, i in pairs):.2f}",
                        ]
                    ],
                    note="Above 1: the services take longer than one process on the same seed."
                    " The in-process run is reproducible bit for bit; the services' runs are not"
                    " (which data each update sees depends on timing).",
                )
            )
    head = by.get("services", attempts)
    wall = statistics.median(a.wall_s for a in head)
    steps = statistics.median(a.env_steps for a in head)
    out.append(
        Section(
            title="Time to solve CartPole-v1 beside the peers",
            columns=["system", "wall s", "env steps"],
            rows=[
                [
                    f"rlfleet DQN, services (median of {len(head)} seeds)",
                    f"{wall:.0f}" + (" PASS" if wall < TARGET_SECONDS else " FAIL"),
                    f"{steps / 1000:.0f}k" + (" PASS" if steps < TARGET_STEPS else " FAIL"),
                ],
                *([name, f"{s:.0f}", f"{n / 1000:.0f}k"] for name, s, n in PEERS),
            ],
            note=f"Targets: under {TARGET_SECONDS:.0f} s and under {TARGET_STEPS // 1000}k env"
            f" steps. Peers' figures are theirs, on their hardware; ours ran on {host}, {now()}.",
        )
    )
    out.append(
        Section(
            title="Per seed",
            columns=[
                "variant",
                "seed",
                "solved",
                "wall s",
                "whole command s",
                "CPU s",
                "env steps",
                "updates",
                "env steps/s",
                "XLA cache",
            ],
            rows=[
                [
                    a.variant,
                    str(a.seed),
                    "yes" if a.solved else "no",
                    f"{a.wall_s:.1f}",
                    f"{a.process_s:.1f}",
                    f"{a.cpu_s:.0f}",
                    f"{a.env_steps:,}",
                    f"{a.learner_steps:,}",
                    f"{a.steps_per_s:,.0f}",
                    a.cache,
                ]
                for a in attempts
            ],
            note="whole command s adds the shutdown. XLA cache: whether JAX's persistent"
            " compilation cache (the launcher's default) already held the programs."
            + (f" Extra launcher arguments: `{' '.join(extra)}`." if extra else ""),
        )
    )
    return out


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    extra: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, extra = argv[:cut], argv[cut + 1 :]
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument(
        "--variants",
        nargs="+",
        choices=("services", "in-process", "no-evaluator"),
        default=["services", "in-process"],
    )
    parser.add_argument("--baseline", metavar="REF", help="also run the services of this commit")
    parser.add_argument("--max-seconds", type=float, default=300.0, help="cap of each run")
    parser.add_argument("--runs-dir", type=Path, default=ROOT / "runs" / "bench")
    parser.add_argument("--no-write", action="store_true", help="do not touch docs/benchmarks.md")
    args = parser.parse_args(argv)
    console = Console()
    host = machine()  # with the load average before the runs
    variants = list(args.variants)
    where = dict.fromkeys(variants, ROOT)
    if args.baseline:
        variants.append("baseline")
        where["baseline"] = baseline_checkout(args.baseline)
    args.runs_dir.mkdir(parents=True, exist_ok=True)
    attempts = []
    for i, seed in enumerate(args.seeds):
        order = variants[i % len(variants) :] + variants[: i % len(variants)]
        for variant in order:
            console.rule(f"seed {seed}: {variant}")
            try:
                attempt = run_once(
                    variant,
                    seed,
                    runs_dir=args.runs_dir.resolve(),
                    max_seconds=args.max_seconds,
                    extra=extra,
                    cwd=where[variant],
                )
            except RunFailed as error:
                console.print(str(error), style="red", markup=False)
                return 1
            attempts.append(attempt)
    result = sections(attempts, extra, host, args.baseline)
    print_sections(console, result)
    if not args.no_write:
        write_section(ROOT / "docs" / "benchmarks.md", "system", markdown(result))
        console.print("written to docs/benchmarks.md (section bench:system)")
    return 0 if all(a.solved for a in attempts) else 1


if __name__ == "__main__":
    sys.exit(main())
