"""Single-process DQN on CartPole: the reference the services are measured against.

No services: one gymnasium vector env holding every actor's envs, an in-memory numpy replay with
Reverb's sample-to-insert rate limiting, and the agent's own policy and ``sgd_steps``. Prints,
per seed, the env steps, SGD steps and wall seconds until ``return_mean_100`` (mean of the last
100 training episodes, exploration included) reaches the target, then the medians::

    .venv/bin/python -m bench.dqn_inprocess --seeds 0 1 2 [--config '{"n_step": 3}']
"""

from __future__ import annotations

from shared.runtime import configure_process

configure_process()  # as every service does: one XLA thread, inline JAX dispatch, malloc


import argparse
import collections
import json
import statistics
import time
from dataclasses import dataclass

import gymnasium as gym
import jax
import numpy as np

from shared.agents.dqn import DQNConfig, make_learner, make_network, make_policy

FIELDS = ("observation", "action", "reward", "discount", "next_observation")


class Replay:
    """FIFO ring of n-step items; uniform or proportional sampling; Reverb's ratio limiter."""

    def __init__(self, config: DQNConfig, obs_dim: int, rng: np.random.Generator) -> None:
        self.config, self.rng, size = config, rng, config.max_replay_size
        self.data = {
            "observation": np.zeros((size, obs_dim), np.float32),
            "action": np.zeros(size, np.int32),
            "reward": np.zeros(size, np.float32),
            "discount": np.zeros(size, np.float32),
            "next_observation": np.zeros((size, obs_dim), np.float32),
        }
        self.priorities, self.max_priority = np.zeros(size, np.float64), 1.0
        self.inserts = self.samples = 0

    @property
    def size(self) -> int:
        return min(self.inserts, self.config.max_replay_size)

    def insert(self, item: dict[str, object]) -> None:
        i = self.inserts % self.config.max_replay_size
        for k in FIELDS:
            self.data[k][i] = item[k]
        self.priorities[i] = self.max_priority
        self.inserts += 1

    def samples_due(self) -> int:
        """Batches the rate limiter admits now: diff - batch >= min_diff, diff = ins*spi - samp."""
        c = self.config
        if self.size < c.min_replay_size:
            return 0
        diff = self.inserts * c.samples_per_insert - self.samples
        min_diff = c.samples_per_insert * c.min_replay_size - c.error_buffer
        return max(0, int((diff - min_diff) // c.batch_size))

    def sample(self, num: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        c, n = self.config, self.size
        shape = (num, c.batch_size)
        if c.prioritized:
            p = self.priorities[:n] ** c.priority_exponent
            p /= p.sum()
            idx = self.rng.choice(n, size=shape, p=p)
            batch = {k: v[idx] for k, v in self.data.items()} | {"probabilities": p[idx]}
        else:
            idx = self.rng.integers(0, n, size=shape)
            batch = {k: v[idx] for k, v in self.data.items()}
        self.samples += idx.size
        return idx, batch


@dataclass
class Result:
    seed: int
    solved: bool
    env_steps: int
    updates: int
    seconds: float
    cpu_seconds: float
    return_mean_100: float


def run(
    config: DQNConfig, seed: int, num_actors: int, max_steps: int, target: float, verbose: bool
) -> Result:
    start, cpu_start = time.perf_counter(), time.process_time()
    n_envs, c = num_actors * config.num_envs, config
    envs = gym.make_vec("CartPole-v1", num_envs=n_envs, vectorization_mode="sync")
    obs, _ = envs.reset(seed=seed)
    obs_dim, num_actions = obs.shape[1], int(envs.single_action_space.n)
    network = make_network(c, num_actions)
    learner, policy = make_learner(c, network), make_policy(network)
    key = jax.random.PRNGKey(seed)
    key, init_key = jax.random.split(key)
    state = learner.init(init_key, obs_dim)
    published = actor_params = state.params
    replay = Replay(c, obs_dim, np.random.default_rng(seed))
    actor_of_env = np.arange(n_envs) // c.num_envs

    buffers: list[list[tuple[np.ndarray, int, float]]] = [[] for _ in range(n_envs)]
    autoreset = np.zeros(n_envs, bool)  # NEXT_STEP autoreset: this step only resets the env
    episode_return, returns = np.zeros(n_envs), collections.deque(maxlen=100)
    updates = vector_steps = 0
    metrics = {"q_mean": np.nan}
    chunk = 8  # SGD steps per jitted call
    act_keys = np.zeros((4096, 2), np.uint32)  # policy keys drawn 4096 at a time

    def emit(steps: list[tuple[np.ndarray, int, float]], next_obs: np.ndarray, term: bool):
        reward = sum(c.discount**k * r for k, (_, _, r) in enumerate(steps))
        discount = 0.0 if term else c.discount ** len(steps)
        replay.insert(
            {
                "observation": steps[0][0],
                "action": steps[0][1],
                "reward": reward,
                "discount": discount,
                "next_observation": next_obs,
            }
        )

    while vector_steps * c.num_envs * num_actors < max_steps:
        actor_steps = vector_steps * c.num_envs
        if vector_steps % c.variable_update_period == 0:
            actor_params = published
        eps = np.array([c.epsilon(a, num_actors, actor_steps) for a in actor_of_env], np.float32)
        if vector_steps % len(act_keys) == 0:
            key, keys_key = jax.random.split(key)
            act_keys = np.asarray(jax.random.split(keys_key, len(act_keys)))
        actions = np.asarray(policy(actor_params, obs, eps, act_keys[vector_steps % len(act_keys)]))
        next_obs, reward, term, trunc, _ = envs.step(actions)
        vector_steps += 1
        for i in np.flatnonzero(~autoreset):
            buf = buffers[i]
            buf.append((obs[i], int(actions[i]), float(reward[i])))
            episode_return[i] += reward[i]
            if term[i] or trunc[i]:
                for j in range(len(buf)):
                    emit(buf[j:], next_obs[i], bool(term[i]))
                buf.clear()
                returns.append(episode_return[i])
                episode_return[i] = 0.0
            elif len(buf) == c.n_step:
                emit(buf, next_obs[i], False)
                buf.pop(0)
        autoreset = term | trunc
        obs = next_obs

        due = replay.samples_due()
        while due > 0:
            num = chunk if due >= chunk else 1
            idx, batch = replay.sample(num)
            if num == 1:
                batch = {k: v[0] for k, v in batch.items()}
                state, metrics, priorities = learner.sgd_step(state, batch)
            else:
                state, metrics, priorities = learner.sgd_steps(state, batch)
            if c.prioritized:
                priorities = np.asarray(priorities).reshape(idx.shape)
                replay.priorities[idx] = priorities
                replay.max_priority = max(replay.max_priority, float(priorities.max()))
            for _ in range(num):
                updates += 1
                if updates % c.publish_every == 0:
                    published = state.params
            due -= num

        if verbose and vector_steps % (10_000 // n_envs) == 0:
            recent = list(returns)[-20:]
            print(
                f"  steps={vector_steps * n_envs} updates={updates}"
                f" eps={eps[0]:.3f} q={float(metrics['q_mean']):.1f} mean100={np.mean(returns):.1f} last20={np.mean(recent):.1f}"
                f" t={time.perf_counter() - start:.1f} cpu={time.process_time() - cpu_start:.1f}",
                flush=True,
            )
        if len(returns) == 100 and np.mean(returns) >= target:
            break
    envs.close()
    steps = vector_steps * n_envs
    mean = float(np.mean(returns)) if returns else float("nan")
    solved = len(returns) == 100 and mean >= target
    cpu = time.process_time() - cpu_start
    return Result(seed, solved, steps, updates, time.perf_counter() - start, cpu, mean)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--num-actors", type=int, default=2)
    parser.add_argument("--max-steps", type=int, default=150_000, help="env steps, all actors")
    parser.add_argument("--target", type=float, default=475.0)
    parser.add_argument("--config", default="{}", help="JSON overrides of DQNConfig")
    parser.add_argument("--verbose", action="store_true", help="progress every 10k env steps")
    args = parser.parse_args()
    config = DQNConfig.from_dict({**DQNConfig().to_dict(), **json.loads(args.config)})
    print("config overrides:", args.config)
    results = []
    for seed in args.seeds:
        r = run(config, seed, args.num_actors, args.max_steps, args.target, args.verbose)
        results.append(r)
        print(
            f"seed {r.seed}: solved={r.solved} env_steps={r.env_steps} updates={r.updates}"
            f" seconds={r.seconds:.1f} cpu_seconds={r.cpu_seconds:.1f} return_mean_100={r.return_mean_100:.1f}",
            flush=True,
        )
    med = {
        k: statistics.median(getattr(r, k) for r in results)
        for k in ("env_steps", "updates", "seconds", "cpu_seconds")
    }
    solved = sum(r.solved for r in results)
    print(
        f"median: env_steps={med['env_steps']:.0f} updates={med['updates']:.0f}"
        f" seconds={med['seconds']:.1f} cpu_seconds={med['cpu_seconds']:.1f} solved={solved}/{len(results)}"
    )


if __name__ == "__main__":
    main()
