"""Where one SAC update's time goes, and what cuts it: critics fused or not, batches per call,
XLA flags. Each variant runs in its own process (XLA_FLAGS are read once, at JAX's start).

    python -m bench.sac_update [--seconds 5] [--obs-dim 17] [--action-dim 6] [--variants 0 1 2]

The update is the learner's own (shared/agents/sac/learning.py) at HalfCheetah's sizes: a
policy and two critics of 256x256, batch 256. Variants:

  separate   the two critics as two flax modules (two chains of small matmuls), 1 batch per call
  fused      the twin critic as one vmapped module (the default): both critics per matmul
  fused k=N  N batches per call, scanned in one jitted update (BATCHES_PER_SAMPLE)
  + flags    the same with extra XLA flags

Every variant prints wall and CPU ms per SGD step (one batch of 256) on one XLA thread, and its
ratios to ``separate`` measured in the same run (on a loaded machine the process waits for a
core, and CPU ms are the steadier figure); the first line gives the machine's load. The XLA
cost analysis of one step (flops) over its CPU time gives the arithmetic rate reached (k=1 only:
XLA counts a scan's body once).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

SINGLE = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
VARIANTS = [
    ("separate", {"fused": False, "k": 1, "flags": ""}),
    ("fused", {"fused": True, "k": 1, "flags": ""}),
    ("fused k=4", {"fused": True, "k": 4, "flags": ""}),
    ("fused k=16", {"fused": True, "k": 16, "flags": ""}),
    (
        "fused k=4 + no thunk runtime",
        {"fused": True, "k": 4, "flags": "--xla_cpu_use_thunk_runtime=false"},
    ),
    (
        "fused k=4 + fast min/max",
        {"fused": True, "k": 4, "flags": "--xla_cpu_enable_fast_min_max=true"},
    ),
]


def child(spec: dict, seconds: float, obs_dim: int, action_dim: int) -> dict:
    """Runs in the variant's process: builds the update, times it, returns the figures."""
    from shared.runtime import configure_process

    configure_process()
    import flax.linen as nn
    import gymnasium
    import jax
    import jax.numpy as jnp
    import numpy as np

    from shared.agents.continuous import Critic, TwinCritic, box_spaces
    from shared.agents.sac import SACConfig, make_learner, make_networks
    from shared.interfaces import Batch, EnvSpec

    class SeparateCritics(nn.Module):
        """The unfused baseline: two critic modules side by side -> (2, batch)."""

        hidden_sizes: tuple[int, ...]

        @nn.compact
        def __call__(self, observation, action):
            return jnp.stack([Critic(self.hidden_sizes)(observation, action) for _ in range(2)])

    box = gymnasium.spaces.Box(-1.0, 1.0, (action_dim,), np.float32)
    obs_space = gymnasium.spaces.Box(-np.inf, np.inf, (obs_dim,), np.float32)
    _, bounds = box_spaces(EnvSpec("Bench-v0", obs_space, box), "sac")
    config = SACConfig(hidden_sizes=(256, 256), batch_size=256)
    networks = make_networks(config, action_dim)
    if not spec["fused"]:
        networks = networks._replace(critic=SeparateCritics((256, 256)))
    assert isinstance(networks.critic, SeparateCritics | TwinCritic)
    learner = make_learner(config, networks, obs_dim, bounds)
    n = config.batch_size * spec["k"]
    rng = np.random.default_rng(0)
    data = {
        "observation": rng.normal(size=(n, obs_dim)).astype(np.float32),
        "action": rng.uniform(-1, 1, (n, action_dim)).astype(np.float32),
        "reward": rng.normal(size=n).astype(np.float32),
        "discount": np.full(n, 0.99, np.float32),
        "next_observation": rng.normal(size=(n, obs_dim)).astype(np.float32),
    }
    batch = Batch(data, np.ones(n, np.float32))
    state = learner.init(jax.random.PRNGKey(0))
    compiled = learner.update.lower(state, batch).compile()
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    # XLA counts a scan's body once whatever its length: the k=1 variants give flops per step
    flops = float((cost or {}).get("flops", 0.0)) if spec["k"] == 1 else 0.0
    for _ in range(3):
        state, _, _ = learner.update(state, batch)
    jax.block_until_ready(state)
    steps, t0, c0 = 0, time.perf_counter(), time.process_time()
    while time.perf_counter() - t0 < seconds:
        state, metrics, _ = learner.update(state, batch)
        jax.block_until_ready(metrics)
        steps += spec["k"]
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"ms": wall * 1e3 / steps, "cpu_ms": cpu * 1e3 / steps, "flops": flops}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="timed per variant")
    parser.add_argument("--obs-dim", type=int, default=17, help="HalfCheetah: 17")
    parser.add_argument("--action-dim", type=int, default=6, help="HalfCheetah: 6")
    parser.add_argument(
        "--variants", nargs="+", type=int, help="indices into VARIANTS (default: all; 0 first)"
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        result = child(json.loads(args.child), args.seconds, args.obs_dim, args.action_dim)
        print(json.dumps(result))
        return
    print(
        f"SAC update, policy + 2 critics of 256x256, batch 256, obs {args.obs_dim}, actions"
        f" {args.action_dim}; one XLA thread; cores={os.cpu_count()}"
        f" load={os.getloadavg()[0]:.1f} at start"
    )
    print(
        f"{'variant':<30} {'ms/step':>8} {'cpu ms/step':>11} {'vs separate (wall, cpu)':>24}"
        f" {'GFLOP/s (cpu)':>13}"
    )
    base = base_cpu = None
    chosen = [VARIANTS[i] for i in args.variants] if args.variants else VARIANTS
    for name, spec in chosen:
        env = {**os.environ, "XLA_FLAGS": f"{SINGLE} {spec['flags']}".strip()}
        done = subprocess.run(
            [sys.executable, "-m", "bench.sac_update", "--child", json.dumps(spec),
             "--seconds", str(args.seconds), "--obs-dim", str(args.obs_dim),
             "--action-dim", str(args.action_dim)],
            env=env, capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        if done.returncode != 0:
            reason = (done.stderr.strip().splitlines() or ["?"])[-1][:60]
            print(f"{name:<30} failed: {reason}")
            continue
        r = json.loads(done.stdout.strip().splitlines()[-1])
        base, base_cpu = base or r["ms"], base_cpu or r["cpu_ms"]
        gflops = f"{r['flops'] / (r['cpu_ms'] * 1e6):.1f}" if r["flops"] else "-"
        ratios = f"{base / r['ms']:.2f}x, {base_cpu / r['cpu_ms']:.2f}x"
        print(
            f"{name:<30} {r['ms']:>8.2f} {r['cpu_ms']:>11.2f} {ratios:>24} {gflops:>13}",
            flush=True,
        )
    print(f"load={os.getloadavg()[0]:.1f} at end; vs separate = its ms/step over this one's")


if __name__ == "__main__":
    main()
