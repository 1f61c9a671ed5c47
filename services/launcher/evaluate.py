"""``rlfleet eval <checkpoint>``: the greedy policy of a learner checkpoint, for k episodes.

The checkpoint is the learner's own file (services/learner/checkpoint.py): the training state's
``jax.tree_util`` leaves in order, params first (``TrainingState`` is a NamedTuple whose first
field is ``params``), beside the agent config and env id it was trained with.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from rich.console import Console

from services.launcher.processes import SINGLE_THREADED, default_jax_cache_dir, jax_cache_env


class EvalError(RuntimeError):
    """The checkpoint cannot be evaluated; the message says why."""


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


def load_params(checkpoint: dict[str, Any], obs_dim: int, num_actions: int) -> tuple[Any, Any]:
    """(network, params) of a DQN checkpoint."""
    import jax

    from shared.agents.dqn import DQNConfig, init_params, make_network

    if checkpoint.get("agent", "dqn") != "dqn":
        raise EvalError(f"agent {checkpoint.get('agent')!r}: only dqn checkpoints are known")
    config = DQNConfig.from_dict(checkpoint.get("agent_config") or {})
    network = make_network(config, num_actions)
    template = init_params(network, jax.random.key(0), obs_dim)
    t_leaves, treedef = jax.tree_util.tree_flatten(template)
    saved = checkpoint["training_state"]["leaves"][: len(t_leaves)]
    for i, (have, want) in enumerate(zip(saved, t_leaves, strict=True)):
        if tuple(have.shape) != tuple(want.shape):
            raise EvalError(
                f"param leaf {i} is {list(have.shape)} in the checkpoint but {list(want.shape)}"
                " for this environment: evaluate on the env the checkpoint was trained on"
            )
    return network, jax.tree_util.tree_unflatten(treedef, [jax.numpy.asarray(a) for a in saved])


def run_episodes(
    checkpoint_path: Path, *, episodes: int, env_id: str | None = None, seed: int = 0
) -> tuple[dict[str, Any], list[float]]:
    """Loads the checkpoint and returns (its header, the greedy returns of ``episodes``)."""
    for key, value in {**SINGLE_THREADED, **jax_cache_env(default_jax_cache_dir())}.items():
        os.environ.setdefault(key, value)
    import gymnasium
    import numpy as np

    from shared import codec
    from shared.agents.dqn import make_greedy_policy
    from shared.errors import DecodeError

    try:
        checkpoint = codec.decode(checkpoint_path.read_bytes())
    except (OSError, DecodeError) as e:
        raise EvalError(f"{checkpoint_path} cannot be read: {e}") from e
    if not isinstance(checkpoint, dict) or "training_state" not in checkpoint:
        raise EvalError(f"{checkpoint_path} is not an rlfleet learner checkpoint")
    env = gymnasium.make(env_id or checkpoint.get("env_id") or "CartPole-v1")
    try:
        obs_dim = int(np.prod(env.observation_space.shape))
        network, params = load_params(checkpoint, obs_dim, int(env.action_space.n))
        greedy = make_greedy_policy(network)
        returns = []
        for episode in range(episodes):
            observation, _ = env.reset(seed=seed + episode)
            total, done = 0.0, False
            while not done:
                action = greedy(params, np.asarray(observation, np.float32).reshape(1, -1))
                observation, reward, terminated, truncated, _ = env.step(int(action[0]))
                total += float(reward)
                done = terminated or truncated
            returns.append(total)
    finally:
        env.close()
    header = {k: checkpoint.get(k) for k in ("agent", "env_id", "step", "param_version")}
    return header, returns


def evaluate_checkpoint(
    path: Path, *, episodes: int, env_id: str | None, seed: int, console: Console
) -> int:
    try:
        checkpoint_path = find_checkpoint(path)
        header, returns = run_episodes(checkpoint_path, episodes=episodes, env_id=env_id, seed=seed)
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
    console.print(f"mean return over {episodes} greedy episodes: {mean:.1f}", highlight=False)
    return 0
