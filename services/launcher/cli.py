"""``rlfleet``: run the whole system locally, look at a service, evaluate a checkpoint.

rlfleet run --actors 2 --until-return 475      # DQN on CartPole-v1 until solved, as services
rlfleet run --in-process --until-return 475    # the same agent in this process, reproducibly
rlfleet run --agent mylab.agents.my_dqn ...     # any agent module (shared/interfaces.py)
rlfleet run --resume runs/<name>               # carry on an interrupted run from its checkpoint
rlfleet status http://127.0.0.1:8001           # a service's /status
rlfleet eval runs/<name>/checkpoints/ckpt-000000012000.msgpack --episodes 10
"""

from __future__ import annotations

import os
import time


def _process_start() -> float:
    """``time.monotonic()`` at this process's start (interpreter start-up included) on Linux,
    else now: "wall seconds from the command's start" are counted from here."""
    now = time.monotonic()
    try:
        with open("/proc/self/stat") as f:
            start_ticks = int(f.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime") as f:
            uptime_s = float(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return now
    age_s = uptime_s - start_ticks / os.sysconf("SC_CLK_TCK")
    return now - age_s if 0.0 <= age_s < 60.0 else now


STARTED_AT = _process_start()

import argparse  # noqa: E402
import asyncio  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
from collections.abc import Sequence  # noqa: E402
from datetime import datetime  # noqa: E402
from pathlib import Path  # noqa: E402

from rich.console import Console  # noqa: E402


def _json_object(text: str) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise argparse.ArgumentTypeError(f"not valid JSON: {e}") from e
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("must be a JSON object, e.g. '{\"learning_rate\": 3e-4}'")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _positive_seconds(text: str) -> float:
    value = float(text)
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text}")
    return value


ENV_TARGETS = ("all", "replay", "learner", "actor", "evaluator")


def _service_env(text: str) -> tuple[str, str, str]:
    target, sep, assignment = text.partition(":")
    key, eq, value = assignment.partition("=")
    if not sep or not eq or not key or target not in ENV_TARGETS:
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected SERVICE:KEY=VALUE with SERVICE one of {', '.join(ENV_TARGETS)}"
        )
    return target, key, value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rlfleet",
        description="rlfleet: run the whole system locally, look at a service, evaluate a checkpoint.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser(
        "run",
        help="start replay, learner, actors and an evaluator locally and train",
        description="Start replay, learner, N actors and an evaluator as local processes, show"
        " their progress and stop on a target return, a step or time limit, or Ctrl-C.",
    )
    run.add_argument("--name", help="run folder name under --runs-dir (default: a timestamp)")
    run.add_argument(
        "--resume",
        type=Path,
        metavar="RUN_DIR",
        help="carry on the run in RUN_DIR from its newest checkpoint, with its saved options"
        " (agent, env, config, seed, home, actors); --until-return, --target-return,"
        " --max-steps and --max-seconds given here replace the saved ones",
    )
    run.add_argument(
        "--agent",
        default="dqn",
        help="a short name of shared/agents/ or an importable module path (default dqn)",
    )
    run.add_argument(
        "--in-process",
        action="store_true",
        help="run the agent, its replay tables, learner and actors in this one process (no"
        " HTTP): the same seed gives the same run bit for bit",
    )
    run.add_argument("--runs-dir", type=Path, default=Path("runs"), help="default: runs")
    run.add_argument("--actors", type=_positive_int, default=2, help="training actors (default 2)")
    run.add_argument(
        "--num-envs", type=_positive_int, help="vector envs per actor (default: the agent config's)"
    )
    run.add_argument(
        "--until-return", type=float, metavar="R", help="stop once return_mean_100 >= R"
    )
    run.add_argument(
        "--target-return",
        type=float,
        metavar="R",
        help="record when return_mean_100 first reaches R, without stopping",
    )
    run.add_argument("--max-steps", type=_positive_int, metavar="S", help="stop after S env steps")
    run.add_argument("--max-seconds", type=float, metavar="T", help="stop after T seconds")
    run.add_argument("--redis-url", help="replay stores items in this Redis (default: memory)")
    run.add_argument("--seed", type=int, default=0, help="default 0")
    run.add_argument("--env-id", default="CartPole-v1", help="gymnasium id (default CartPole-v1)")
    run.add_argument(
        "--agent-config",
        type=_json_object,
        default={},
        metavar="JSON",
        help="overrides of the agent's config, e.g. '{\"learning_rate\": 3e-4}'",
    )
    run.add_argument("--no-evaluator", dest="evaluator", action="store_false")
    run.add_argument(
        "--evaluator-nice",
        type=int,
        default=10,
        metavar="N",
        help="niceness of the evaluator process (default 10: training gets the CPU first)",
    )
    run.add_argument(
        "--checkpoint-every", type=float, metavar="SECONDS", help="(default: the learner's)"
    )
    run.add_argument(
        "--env",
        dest="service_env",
        type=_service_env,
        action="append",
        default=[],
        metavar="SERVICE:KEY=VALUE",
        help="one more environment variable of a service (replay, learner, actor, evaluator or"
        " all), over the launcher's own; e.g. --env learner:SAMPLE_PREFETCH=4 (repeatable)",
    )
    run.add_argument(
        "--jax-cache-dir",
        type=Path,
        metavar="DIR",
        help="JAX's persistent compilation cache (default: $XDG_CACHE_HOME/rlfleet/jax)",
    )
    run.add_argument(
        "--no-jax-cache",
        action="store_true",
        help="compile every XLA program afresh (a cold start)",
    )
    run.add_argument(
        "--grace-seconds", type=float, default=10.0, help="SIGTERM to SIGKILL (default 10)"
    )
    run.add_argument(
        "--start-timeout",
        type=_positive_seconds,
        default=120.0,
        metavar="SECONDS",
        help="how long each service may take to answer /healthz at start (default 120; raise it"
        " on a loaded machine, where a learner's first compile can take longer)",
    )
    run.add_argument("--log-level", default="info", help="of the services (default info)")

    status = sub.add_parser("status", help="print a service's /status")
    status.add_argument("url", help="e.g. http://127.0.0.1:8001")
    status.add_argument("--json", action="store_true", help="raw JSON instead of a table")

    ev = sub.add_parser("eval", help="evaluation episodes of a learner checkpoint, any agent")
    ev.add_argument("checkpoint", type=Path, help="a ckpt-*.msgpack file or a CHECKPOINT_DIR")
    ev.add_argument("--episodes", type=_positive_int, default=10, help="default 10")
    ev.add_argument("--env-id", help="default: the checkpoint's (another one must have its spaces)")
    ev.add_argument("--agent", help="refuse the checkpoint unless it was trained by this agent")
    ev.add_argument("--seed", type=int, default=0)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    console = Console()
    token = os.environ.get("RLFLEET_TOKEN") or None
    if args.command == "run":
        return _run(args, console, token)
    if args.command == "status":
        from services.launcher.status import print_status

        return print_status(args.url, console=console, token=token, raw=args.json)
    from services.launcher.evaluate import evaluate_checkpoint

    return evaluate_checkpoint(
        args.checkpoint,
        episodes=args.episodes,
        env_id=args.env_id,
        agent=args.agent,
        seed=args.seed,
        console=console,
    )


def _run(args: argparse.Namespace, console: Console, token: str | None) -> int:
    from services.launcher.processes import default_jax_cache_dir
    from services.launcher.run import EXIT_BAD_OPTIONS, ResumeError, RunOptions, resumed_options

    if args.resume is not None:
        try:
            saved = resumed_options(args.resume)
        except ResumeError as e:
            console.print(f"[red]cannot resume:[/red] {e}", highlight=False)
            return EXIT_BAD_OPTIONS
        for option in ("until_return", "target_return", "max_steps", "max_seconds"):
            if getattr(args, option) is None:
                setattr(args, option, saved.get(option))
        for option in ("agent", "in_process", "actors", "num_envs", "evaluator", "seed"):
            setattr(args, option, saved[option])
        args.env_id, args.agent_config = saved["env_id"], saved["agent_config"]
        args.checkpoint_every = args.checkpoint_every or saved.get("checkpoint_every_s")
        args.name, args.runs_dir = args.resume.name, args.resume.parent

    name = args.name or datetime.now().strftime("%Y%m%d-%H%M%S")
    extra_env: dict[str, dict[str, str]] = {}
    for target, key, value in args.service_env:
        extra_env.setdefault(target, {})[key] = value
    opts = RunOptions(
        name=name,
        runs_dir=args.runs_dir,
        agent=args.agent,
        in_process=args.in_process,
        actors=args.actors,
        num_envs=args.num_envs,
        evaluator=args.evaluator,
        evaluator_nice=args.evaluator_nice,
        until_return=args.until_return,
        target_return=args.target_return,
        max_steps=args.max_steps,
        max_seconds=args.max_seconds,
        redis_url=args.redis_url,
        seed=args.seed,
        env_id=args.env_id,
        agent_config=args.agent_config,
        token=token,
        checkpoint_every_s=args.checkpoint_every,
        grace_s=args.grace_seconds,
        start_timeout_s=args.start_timeout,
        log_level=args.log_level,
        extra_env=extra_env,
        jax_cache_dir=None if args.no_jax_cache else args.jax_cache_dir or default_jax_cache_dir(),
    )
    if args.resume is None and opts.run_dir.exists() and any(opts.run_dir.iterdir()):
        console.print(
            f"[red]{opts.run_dir} already exists and is not empty;[/red] pick --name, or"
            f" --resume {opts.run_dir} to carry it on"
        )
        return 2
    if opts.in_process:
        if opts.redis_url or opts.extra_env:
            console.print(
                "[red]--in-process has no services:[/red] --redis-url and --env do not apply"
                " (its replay is the memory store)"
            )
            return EXIT_BAD_OPTIONS
        return _run_in_process(opts, console)
    from services.launcher.services_run import ServicesRun

    return asyncio.run(ServicesRun(opts, started_at=STARTED_AT, console=console).execute())


def _run_in_process(opts, console: Console) -> int:
    """The process settings every service applies, then the run: before JAX is imported."""
    from services.launcher.processes import jax_cache_env

    os.environ.update(opts.threads)
    if opts.jax_cache_dir is not None:
        os.environ.update(jax_cache_env(opts.jax_cache_dir.resolve()))
    from shared.runtime import configure_process

    configure_process()
    from services.launcher.inprocess import InProcessRun

    run = InProcessRun(opts, started_at=STARTED_AT, console=console, handle_signals=True)
    return run.execute()


if __name__ == "__main__":
    sys.exit(main())
