"""``rlfleet eval <checkpoint>``: evaluation episodes of a learner checkpoint, for any agent.

Everything goes through the agent contract (shared/interfaces.py): the checkpoint's header names
the agent, its config and the environment's spec; the agent is built from them, its training
state restored by name into a fresh ``learner.init`` state, and ``learner.params(state)`` drives
its ``evaluation_policy`` in the actors' own ``ActingLoop``. A checkpoint of another agent than
``--agent``, or for an environment whose spaces differ from ``--env-id``'s, is refused.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from rich.console import Console

from services.launcher.processes import SINGLE_THREADED, default_jax_cache_dir, jax_cache_env


class EvalError(RuntimeError):
    """The checkpoint cannot be evaluated; the message says why."""


class FixedVariables:
    """Parameters that never change (the acting loop's ``Variables``)."""

    def __init__(self, params: Any) -> None:
        self.params = params
        self.version = 0

    def update(self, calls: int) -> None:
        pass


def find_checkpoint(path: Path) -> Path:
    """``path`` itself, or the newest ``ckpt-*.msgpack`` when ``path`` is a directory."""
    if path.is_dir():
        found = sorted(path.glob("ckpt-*.msgpack"))
        if not found:
            raise EvalError(f"no ckpt-*.msgpack in {path}")
        return found[-1]
    if not path.exists():
        raise EvalError(f"{path} does not exist")
    return path


def run_episodes(
    checkpoint_path: Path,
    *,
    episodes: int,
    env_id: str | None = None,
    agent: str | None = None,
    seed: int = 0,
) -> tuple[dict[str, Any], list[float]]:
    """Loads the checkpoint and returns (its header, the returns of ``episodes`` evaluation
    episodes, one environment, one after the other)."""
    for key, value in {**SINGLE_THREADED, **jax_cache_env(default_jax_cache_dir())}.items():
        os.environ.setdefault(key, value)
    import jax

    from services.actor.environment import make_vector_env
    from services.actor.loop import ActingLoop
    from services.experiment import agent_name, build_experiment, describe_spec, load_agent
    from services.learner.checkpoint import CheckpointError, read_checkpoint, state_from_nest
    from shared.interfaces import Placement

    try:
        checkpoint = read_checkpoint(checkpoint_path)
        trained_by = str(checkpoint.get("agent"))
        if agent is not None and agent_name(load_agent(agent)) != trained_by:
            raise EvalError(f"{checkpoint_path} was trained by agent {trained_by!r}, not {agent!r}")
        env_id = env_id or str(checkpoint["env_id"])
        experiment = build_experiment(
            trained_by, env_id, seed=seed, overrides=checkpoint.get("agent_config") or {}
        )
        saved_spec = {k: v for k, v in (checkpoint.get("env_spec") or {}).items() if k != "env_id"}
        spec = {k: v for k, v in describe_spec(experiment.spec).items() if k != "env_id"}
        if spec != saved_spec:
            raise EvalError(
                f"{checkpoint_path} was trained on {checkpoint['env_id']} with spaces {saved_spec};"
                f" {env_id} has {spec}: evaluate on an environment with the same spaces"
            )
        learner = experiment.agent.learner
        state = state_from_nest(learner.init(jax.random.PRNGKey(0)), checkpoint["training_state"])
    except (CheckpointError, ValueError) as e:  # ExperimentError is a ValueError
        raise EvalError(str(e)) from e
    env = make_vector_env(env_id, 1)
    acting = ActingLoop(
        env,
        experiment.agent.evaluation_policy,
        FixedVariables(learner.params(state)),
        None,
        seed=seed,
        placement=Placement(num_envs=1),
    )
    try:
        while acting.episodes < episodes:
            acting.step()
    finally:
        acting.close()
    returns = [float(e["return"]) for e in list(acting.finished)[:episodes]]
    header = {k: checkpoint.get(k) for k in ("agent", "env_id", "step", "param_version")}
    return header, returns


def evaluate_checkpoint(
    path: Path,
    *,
    episodes: int,
    env_id: str | None,
    seed: int,
    console: Console,
    agent: str | None = None,
) -> int:
    try:
        checkpoint_path = find_checkpoint(path)
        header, returns = run_episodes(
            checkpoint_path, episodes=episodes, env_id=env_id, agent=agent, seed=seed
        )
    except EvalError as e:
        console.print(f"[red]{e}[/red]")
        return 1
    mean = sum(returns) / len(returns)
    console.print(
        f"{checkpoint_path}: {header['agent']} on {env_id or header['env_id']}, learner step"
        f" {header['step']}, params v{header['param_version']}",
        highlight=False,
    )
    console.print(f"returns: {', '.join(f'{r:g}' for r in returns)}", highlight=False)
    console.print(f"mean return over {episodes} evaluation episodes: {mean:.1f}", highlight=False)
    return 0
