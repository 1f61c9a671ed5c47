"""Baselines: one agent on one environment over several seeds, beside the published scores.

    python -m bench.baselines --agent dqn --env CartPole-v1 --seeds 0 1 2 3 4 [--home services]

Each seed is one ``rlfleet run`` (in one process by default, or through the services) for a
budget of env steps, recording when ``return_mean_100`` first reaches the target; then the final
parameters play ``--eval-episodes`` evaluation episodes (``rlfleet eval``, the agent's
evaluation policy). The table in docs/baselines.md (one section per agent, environment and
home) gives every seed, the mean ± std over seeds of the final training return (last 100
episodes) and of the evaluation return, the median and the worst seed's env steps and wall
seconds to the target, and the published reference beside them. Every agent adds its rows with
the same command.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from rich.console import Console

from bench.harness import RunFailed, run_launcher
from bench.report import Section, machine, markdown, now, print_sections, write_section

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs" / "baselines.md"
HEADER = (
    "# Baselines\n\n"
    "Written by `python -m bench.baselines` (one section per agent, environment and home; the"
    " command that made a section is in it). Final scores are the mean ± std over seeds;"
    ' "to target" is when `return_mean_100` (the mean of the last 100 training episodes) first'
    " reached the target. The worst seed is reported beside the median.\n"
)

# Targets and budgets per environment, and the published scores to stand beside.
ENVS = {
    "CartPole-v1": {"target": 475.0, "max_steps": 500_000},
    "Pendulum-v1": {"target": -200.0, "max_steps": 60_000},
    # the target is the agent's cleanRL score at 1M steps where one is given below (TARGETS)
    "HalfCheetah-v5": {"target": 9_000.0, "max_steps": 1_000_000},
}
REFERENCES = {
    ("dqn", "CartPole-v1"): "cleanRL DQN (`dqn.py`, 500k steps): 498.38 ± 2.29",
    ("ppo", "CartPole-v1"): "cleanRL PPO (`ppo.py`, 500k steps): 490.04 ± 6.12",
    ("ppo", "HalfCheetah-v5"): (
        "cleanRL PPO-continuous (`ppo_continuous_action.py`, HalfCheetah-v4, 1M steps): 1442.64"
    ),
    ("sac", "HalfCheetah-v5"): "cleanRL SAC (`sac_continuous_action.py`, 1M steps): 9634.89",
    ("td3", "HalfCheetah-v5"): "cleanRL TD3 (`td3_continuous_action_jax.py`, 1M steps): 9345.93",
}
# Targets of an agent on an environment where its own reference differs from ENVS' target.
TARGETS = {("ppo", "HalfCheetah-v5"): 1442.64}


@dataclass(frozen=True)
class SeedResult:
    seed: int
    summary: dict[str, Any]
    eval_returns: list[float]

    @property
    def reached(self) -> dict[str, float] | None:
        return self.summary.get("target_reached")


def run_seed(args: argparse.Namespace, seed: int, runs_dir: Path, stamp: str) -> SeedResult:
    name = f"{args.agent.replace('.', '_')}-{args.env}-{args.home}-seed{seed}-{stamp}"
    command = [
        sys.executable, "-m", "services.launcher.cli", "run", "--name", name,
        "--runs-dir", str(runs_dir), "--agent", args.agent, "--env-id", args.env,
        "--seed", str(seed), "--max-steps", str(args.max_steps),
        "--target-return", str(args.target), "--agent-config", args.agent_config,
    ]  # fmt: skip
    if args.home == "in-process":
        command.append("--in-process")
    if args.until_target:
        command += ["--until-return", str(args.target)]
    if args.no_evaluator:
        command.append("--no-evaluator")
    summary = run_launcher(
        command, runs_dir / name, what=f"seed {seed}", log=runs_dir / f"{name}.out"
    )
    returns: list[float] = []
    if args.eval_episodes:
        from services.launcher.evaluate import find_checkpoint, run_episodes

        checkpoint = find_checkpoint(runs_dir / name / "checkpoints")
        _, returns = run_episodes(checkpoint, episodes=args.eval_episodes, seed=10_000 + seed)
    return SeedResult(seed, summary, returns)


def _mean_std(values: list[float]) -> str:
    if not values:
        return "-"
    std = statistics.pstdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.1f} ± {std:.1f}"


def sections(args: argparse.Namespace, results: list[SeedResult], host: str) -> list[Section]:
    rows = []
    for r in results:
        s, reached = r.summary, r.reached
        rows.append(
            [
                str(r.seed),
                "-" if s["return_mean_100"] is None else f"{s['return_mean_100']:.1f}",
                f"{statistics.mean(r.eval_returns):.1f}" if r.eval_returns else "-",
                f"{reached['env_steps']:,}" if reached else "not reached",
                f"{reached['wall_s']:.1f}" if reached else "-",
                f"{s['env_steps']:,}",
                f"{s['wall_s']:.1f}",
            ]
        )
    finals = [r.summary["return_mean_100"] for r in results if r.summary["return_mean_100"]]
    evals = [statistics.mean(r.eval_returns) for r in results if r.eval_returns]
    reached = [r.reached for r in results if r.reached]
    steps = [x["env_steps"] for x in reached]
    walls = [x["wall_s"] for x in reached]
    spread = "-"
    if steps:
        spread = f"{max(steps) / statistics.median(steps):.2f}"
    budget = "until the target" if args.until_target else f"{args.max_steps:,} env steps"
    command = (
        f"python -m bench.baselines --agent {args.agent} --env {args.env} --seeds"
        f" {' '.join(map(str, args.seeds))} --home {args.home}"
        + (" --until-target" if args.until_target else "")
        + (" --no-evaluator" if args.no_evaluator else "")
        + (f" --agent-config '{args.agent_config}'" if args.agent_config != "{}" else "")
    )
    summary = Section(
        title=f"{args.agent} on {args.env}, {args.home} ({len(results)} seeds, {budget})",
        columns=[
            "final return (last 100)",
            f"evaluation return ({args.eval_episodes} episodes)",
            f"env steps to {args.target:g}: median / worst",
            "wall s to target: median / worst",
            "worst / median steps",
            "reference",
        ],
        rows=[
            [
                _mean_std(finals),
                _mean_std(evals),
                f"{statistics.median(steps):,.0f} / {max(steps):,}" if steps else "-",
                f"{statistics.median(walls):.1f} / {max(walls):.1f}" if walls else "-",
                spread + (f" ({len(reached)}/{len(results)} reached)"),
                REFERENCES.get((args.agent, args.env), "-"),
            ]
        ],
        note=f"`{command}`, {now()}, {host}; {args.jobs} seed(s) at a time.",
    )
    per_seed = Section(
        title=f"{args.agent} on {args.env}, {args.home}: per seed",
        columns=[
            "seed",
            "final return (last 100)",
            "evaluation return",
            "env steps to target",
            "wall s to target",
            "env steps",
            "wall s",
        ],
        rows=rows,
    )
    return [summary, per_seed]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--agent", default="dqn")
    parser.add_argument("--env", default="CartPole-v1")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--home", choices=("in-process", "services"), default="in-process")
    parser.add_argument("--max-steps", type=int, help="env step budget (default: per env)")
    parser.add_argument("--target", type=float, help="return to reach (default: per env)")
    parser.add_argument("--until-target", action="store_true", help="stop each seed at it")
    parser.add_argument("--eval-episodes", type=int, default=20)
    parser.add_argument(
        "--no-evaluator",
        action="store_true",
        help="run no evaluator service beside training (the evaluation return is played"
        " afterwards from the final checkpoint either way)",
    )
    parser.add_argument("--agent-config", default="{}", help="JSON overrides of the config")
    parser.add_argument("--jobs", type=int, default=1, help="seeds run at the same time")
    parser.add_argument("--runs-dir", type=Path, default=ROOT / "runs" / "baselines")
    parser.add_argument("--no-write", action="store_true", help="do not touch docs/baselines.md")
    args = parser.parse_args(argv)
    defaults = dict(ENVS.get(args.env, {"target": float("inf"), "max_steps": 1_000_000}))
    defaults["target"] = TARGETS.get((args.agent, args.env), defaults["target"])
    args.target = args.target if args.target is not None else defaults["target"]
    args.max_steps = args.max_steps or defaults["max_steps"]
    console = Console()
    host = machine()
    args.runs_dir.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    results: list[SeedResult] = []
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        futures = [pool.submit(run_seed, args, seed, args.runs_dir, stamp) for seed in args.seeds]
        for future in futures:
            try:
                result = future.result()
            except RunFailed as error:
                for pending in futures:
                    pending.cancel()
                console.print(f"{error} (its log: {args.runs_dir})", style="red", markup=False)
                return 1
            results.append(result)
            console.print(f"seed {result.seed}: {result.summary['line']}", highlight=False)
    result = sections(args, results, host)
    print_sections(console, result)
    if not args.no_write:
        key = f"{args.agent}:{args.env}:{args.home}"
        write_section(DOCS, key, markdown(result), header=HEADER)
        console.print(f"written to {DOCS.relative_to(ROOT)} (section bench:{key})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
