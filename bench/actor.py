"""Actor overhead: env steps/s of one actor service against the bare env + policy loop.

The bare loop (in this process) is what acting costs without services: the same gymnasium vector
env (16 CartPole envs, SAME_STEP autoreset), the same jitted policy call, nothing else. The actor
is ``python -m services.actor`` with the same number of envs, talking to real replay and learner
processes: its n-step adder, inserts, parameter pulls and reports all run. Rounds interleave: the
actor process is paused (SIGSTOP) while the bare loop runs and resumed (SIGCONT) for its own
rounds, and the ratio is the median of the per-round ratios (bench/harness.py).

The learner does not train here (its replay table never reaches ``min_replay_size``), so the
figure is the actor's own overhead, with replay's and the learner's serving included::

    .venv/bin/python -m bench.actor [--num-envs 16] [--rounds 5] [--round-s 4]
        [--agent-config '{"insert_batch_size": 64}']
"""

from __future__ import annotations

from shared.runtime import configure_process

configure_process()  # as every service does: one XLA thread, inline JAX dispatch, malloc

import argparse
import json
import os
import signal
import statistics
import tempfile
import time
from pathlib import Path

import httpx
import jax
import numpy as np

from bench.harness import ChildServer
from services.actor import environment
from services.experiment import Experiment, build_experiment
from shared.interfaces import Placement


class BareLoop:
    """The env + policy loop with no services: what the actor's overhead is measured against."""

    def __init__(self, experiment: Experiment, num_envs: int, seed: int = 0) -> None:
        self.env = environment.make_vector_env(experiment.env_id, num_envs)
        agent = experiment.agent
        self.params = agent.learner.params(agent.learner.init(jax.random.PRNGKey(seed)))
        self.policy = agent.policy
        self.state = self.policy.init(jax.random.PRNGKey(seed), Placement(num_envs))
        self.observation, _ = self.env.reset(seed=seed)
        self.first = np.ones(num_envs, bool)

    def run(self, duration_s: float) -> tuple[float, float]:
        """Env steps per second over ``duration_s``, and CPU seconds per env step."""
        steps, start, cpu = 0, time.perf_counter(), time.process_time()
        while time.perf_counter() - start < duration_s:
            actions, _, self.state = self.policy.step(
                self.params, self.state, self.observation, self.first
            )
            step = environment.step(self.env, np.asarray(actions))
            self.observation, self.first = step.observation, step.done
            steps += self.env.num_envs
        return steps / (time.perf_counter() - start), (time.process_time() - cpu) / steps


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def actor_status(actor: ChildServer) -> dict:
    return httpx.get(f"{actor.url}/status", timeout=10).json()


def actor_round(
    actor: ChildServer, services: list[ChildServer], duration_s: float
) -> tuple[float, float, float, dict]:
    """Resumes the actor, measures it over ``duration_s``, pauses it again.

    Returns env steps/s, the actor's CPU seconds per env step, the CPU seconds per env step of
    the actor, replay and learner processes together, and the actor's last status.
    """
    os.kill(actor.pid, signal.SIGCONT)
    try:
        time.sleep(0.5)  # let it pick up where it was
        first, t0 = actor_status(actor), time.perf_counter()
        cpu0 = [cpu_seconds(p.pid) for p in [actor, *services]]
        time.sleep(duration_s)
        cpu1 = [cpu_seconds(p.pid) for p in [actor, *services]]
        last, t1 = actor_status(actor), time.perf_counter()
    finally:
        os.kill(actor.pid, signal.SIGSTOP)
    steps = max(last["steps"] - first["steps"], 1)
    used = [b - a for a, b in zip(cpu0, cpu1, strict=True)]
    return steps / (t1 - t0), used[0] / steps, sum(used) / steps, last


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-envs", type=int, default=16)
    parser.add_argument("--env-id", default="CartPole-v1")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--round-s", type=float, default=4.0)
    parser.add_argument("--agent", default="dqn", help="the agent (default dqn)")
    parser.add_argument("--agent-config", default="{}", help="JSON overrides of its Config")
    args = parser.parse_args()

    overrides = json.loads(args.agent_config)
    # Inserts are admitted while the table holds fewer than min_replay_size items; the learner
    # waits for that many and so never trains (nor takes CPU) during the benchmark.
    overrides = {"min_replay_size": 10**6, "max_replay_size": 10**6, **overrides}
    experiment = build_experiment(args.agent, args.env_id, overrides=overrides)
    fleet = experiment.fleet
    log_dir = Path(tempfile.mkdtemp(prefix="rlfleet-bench-actor-"))

    replay = ChildServer("services.replay", {}, log_dir=log_dir)
    replay.launch()
    replay.wait_ready()
    learner_env = {
        "REPLAY_URL": replay.url,
        "AGENT": args.agent,
        "ENV_ID": args.env_id,
        "AGENT_CONFIG": json.dumps(overrides),
    }
    learner = ChildServer("services.learner", learner_env, log_dir=log_dir)
    actor = ChildServer(
        "services.actor",
        {
            "LEARNER_URL": learner.url,
            "REPLAY_URL": replay.url,
            "NUM_ENVS": str(args.num_envs),
            "ACTOR_ID": "bench-actor",
        },
        log_dir=log_dir,
    )
    try:
        learner.launch()
        learner.wait_ready(timeout_s=120)
        actor.launch()
        actor.wait_ready()
        deadline = time.monotonic() + 120
        while actor_status(actor)["state"] != "acting" or actor_status(actor)["steps"] == 0:
            if time.monotonic() > deadline:
                raise TimeoutError(f"the actor did not start acting; see {log_dir}")
            time.sleep(0.2)
        os.kill(actor.pid, signal.SIGSTOP)

        bare = BareLoop(experiment, args.num_envs)
        bare.run(1.0)  # jit and warm-up
        actor_round(actor, [replay, learner], 1.0)
        rates: dict[str, list[float]] = {k: [] for k in ("bare", "actor", "ratio")}
        cpu: dict[str, list[float]] = {k: [] for k in ("bare", "actor", "all")}
        for r in range(args.rounds):
            order = ["bare", "actor"] if r % 2 == 0 else ["actor", "bare"]
            for variant in order:
                if variant == "bare":
                    rate, cpu_per_step = bare.run(args.round_s)
                    rates["bare"].append(rate)
                    cpu["bare"].append(cpu_per_step)
                else:
                    rate, own, total, status = actor_round(actor, [replay, learner], args.round_s)
                    rates["actor"].append(rate)
                    cpu["actor"].append(own)
                    cpu["all"].append(total)
            rates["ratio"].append(rates["actor"][-1] / rates["bare"][-1])
            print(
                f"round {r}: bare {rates['bare'][-1]:7.0f} steps/s  actor {rates['actor'][-1]:7.0f}"
                f" steps/s  ratio {rates['ratio'][-1]:.2f}   CPU us/step: bare"
                f" {cpu['bare'][-1] * 1e6:5.1f}  actor {cpu['actor'][-1] * 1e6:5.1f}"
                f"  actor+replay+learner {cpu['all'][-1] * 1e6:5.1f}",
                flush=True,
            )
        med = {k: statistics.median(v) for k, v in rates.items()}
        cpu_med = {k: statistics.median(v) * 1e6 for k, v in cpu.items()}
        print(
            f"\n{args.num_envs} x {args.env_id}, insert_batch_size {fleet.insert_batch_size},"
            f" variable_update_period {fleet.variable_update_period}; {args.rounds} rounds of"
            f" {args.round_s:.0f} s; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"
        )
        print(
            f"bare env+policy loop : {med['bare']:8.0f} env steps/s   {cpu_med['bare']:6.1f} CPU us/step"
        )
        print(
            f"actor via services   : {med['actor']:8.0f} env steps/s   {cpu_med['actor']:6.1f} CPU us/step"
            f" (actor), {cpu_med['all']:6.1f} (actor+replay+learner)"
        )
        print(
            f"actor / bare         : {med['ratio']:8.2f} (median of per-round ratios; target >= 0.80)"
        )
        print(
            f"CPU bare / actor     : {cpu_med['bare'] / cpu_med['actor']:8.2f}"
            f"   [items stored {status['inserted_items']}, rate-limited {status['rate_limited']},"
            f" param pulls {status['params_fetched'] + status['params_not_modified']},"
            f" last_error {status['last_error']}]"
        )
    finally:
        if actor.proc is not None and actor.proc.poll() is None:
            os.kill(actor.pid, signal.SIGCONT)
        for server in (actor, learner, replay):
            server.stop()


if __name__ == "__main__":
    main()
