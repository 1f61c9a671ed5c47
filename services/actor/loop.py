"""The actor: reads the experiment from the learner, builds its agent, then acts until told to stop.

Tasks on one event loop, in one thread (all owned by ``ActorRuntime``)::

    acting          ActingLoop.run: policy -> env.step -> adder, as fast as it can; after each
                    step it yields once, so the other tasks' ready I/O runs between two steps
    writers         InsertWriter senders, one writer per table (adder requests -> replay)
    variables       VariableClient (parameters <- learner, every variable_update_period calls)
    reporter        steps and episodes -> learner every REPORT_EVERY_S

Acting never waits on the network, except through the writer's bounded queue (back-pressure from
replay) and for the very first parameters. One thread, not an acting thread beside the event
loop: the HTTP work then costs its CPU time and no more. With two threads, each time the policy
call released the GIL the event loop took it, and acting waited for it back (bench.actor
measured 0.61-0.68 of the bare loop's steps/s with a thread, 0.70 without; docs/actor.md).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
import zlib
from collections.abc import Sequence
from typing import Any, Protocol

import gymnasium as gym
import jax
import numpy as np

from services.actor import environment
from services.actor.settings import ActorSettings
from services.actor.variable_client import VariableClient
from services.actor.writer import InsertWriter
from services.experiment import experiment_from_description
from shared.clients import LearnerClient, ReplayClient, make_http_client
from shared.errors import ConnectionFailed, ServiceError, ServiceUnavailable
from shared.interfaces import Adder, Batching, Placement, Policy

log = logging.getLogger(__name__)

WAIT_FOR_ROOM_S = 0.2  # back-pressure is waited for in slices, so that stop() is seen


class Variables(Protocol):
    """Where the acting loop gets parameters: the learner over HTTP (``VariableClient``), the
    in-process trainer, or fixed ones (``rlfleet eval``)."""

    @property
    def params(self) -> Any: ...

    @property
    def version(self) -> int | None:
        """The version of ``params`` (as ``GET /params`` numbers them)."""
        ...

    def update(self, calls: int) -> None:
        """Told the policy-call count after each call; may bring newer parameters. Never blocks."""
        ...


class ActingLoop:
    """Steps ``env`` with the agent's batched policy and feeds the adder.

    ``step()`` is one vector step (policy -> env.step -> adder -> episode bookkeeping); the
    in-process runner and ``rlfleet eval`` call it directly, and ``run()``, the actor service's
    acting task, calls it in a loop with a turn of the event loop and the writers' back-pressure
    in between. With ``record_version`` each step's extras get ``param_version`` (num_envs,) int32:
    the version of the parameters that chose the action, for the learner's policy lag.
    """

    def __init__(
        self,
        env: gym.vector.VectorEnv,
        policy: Policy,
        variables: Variables,
        adder: Adder | None,
        *,
        seed: int,
        placement: Placement,
        writers: Sequence[InsertWriter] = (),
        record_version: bool = False,
    ) -> None:
        self._env = env
        self._record_version = record_version
        self._policy = policy
        self._variables = variables
        self._adder = adder
        self._writers = writers
        self._seed = seed
        self._placement = placement
        self._stop = False
        self._state: Any = None
        self._observation: np.ndarray | None = None
        self._first: np.ndarray | None = None
        self._returns = np.zeros(env.num_envs, np.float64)
        self._lengths = np.zeros(env.num_envs, np.int64)
        self.calls = 0  # policy calls: the variable client's clock, as in Acme
        self.steps = 0  # env steps, all envs counted
        self.episodes = 0
        self.finished: collections.deque[dict[str, float]] = collections.deque(maxlen=10_000)
        self.recent_returns: collections.deque[float] = collections.deque(maxlen=100)

    @property
    def pending_items(self) -> int:
        """Items formed by the adder but not yet handed to the writer."""
        return int(getattr(self._adder, "pending", 0))

    def stop(self) -> None:
        self._stop = True

    def close(self) -> None:
        self._env.close()

    def reset(self) -> None:
        """Resets the environments (seeded) and the policy state; the first call of ``step``."""
        self._observation, _ = self._env.reset(seed=self._seed)
        if self._adder is not None:
            self._adder.add_first(self._observation)
        self._state = self._policy.init(jax.random.PRNGKey(self._seed), self._placement)
        self._first = np.ones(self._env.num_envs, bool)
        self._returns[:] = 0.0
        self._lengths[:] = 0

    def step(self) -> None:
        """One step of every environment with the latest parameters."""
        if self._state is None:
            self.reset()
        actions, extras, self._state = self._policy.step(
            self._variables.params, self._state, self._observation, self._first
        )
        actions = np.asarray(actions)  # (num_envs, *action_shape)
        step = environment.step(self._env, actions)
        if self._adder is not None:
            extras = {name: np.asarray(v) for name, v in extras.items()}
            if self._record_version:
                extras["param_version"] = np.full(len(actions), self._variables.version, np.int32)
            self._adder.add(
                actions,
                step.reward,
                step.final_observation,
                terminated=step.terminated,
                truncated=step.truncated,
                extras=extras or None,
            )
        self._returns += step.reward
        self._lengths += 1
        ended = np.flatnonzero(step.done)
        if len(ended):
            finished = self._returns[ended].tolist()
            self.finished.extend(
                {"return": r, "length": n}
                for r, n in zip(finished, self._lengths[ended].tolist(), strict=True)
            )
            self.recent_returns.extend(finished)
            self._returns[ended] = 0.0
            self._lengths[ended] = 0
            self.episodes += len(ended)
            if self._adder is not None:
                self._adder.add_first(step.observation, envs=step.done)
        self._observation, self._first = step.observation, step.done
        self.steps += self._env.num_envs
        self.calls += 1
        self._variables.update(self.calls)

    async def run(self) -> None:
        self.reset()
        while not self._stop:
            self.step()
            await asyncio.sleep(0)  # the senders, the variable client and the server run here
            for writer in self._writers:
                while writer.full and not self._stop:
                    await writer.wait_for_room(WAIT_FOR_ROOM_S)
        if self._adder is not None:
            self._adder.flush()


def records_version(tables: dict[str, dict[str, Any]]) -> bool:
    """Whether an agent's items carry ``param_version``: its tables' signatures say so."""
    return any("param_version" in (body.get("signature") or {}) for body in tables.values())


def actor_seed(settings: ActorSettings, experiment_seed: int) -> int:
    """SEED, or one derived from the experiment's seed, ACTOR_ID and ACTOR_INDEX."""
    if settings.seed is not None:
        return settings.seed
    entropy = [experiment_seed, zlib.crc32(settings.actor_id.encode()), settings.actor_index]
    return int(np.random.SeedSequence(entropy).generate_state(1)[0] >> 1)


class ActorRuntime:
    """Builds the actor from the learner's ``GET /config`` and runs it; ``stop`` shuts down."""

    def __init__(self, settings: ActorSettings) -> None:
        self.settings = settings
        self.state = "starting"
        self.last_error: str | None = None
        self.env_id: str | None = None
        self.num_envs: int | None = None
        self.seed: int | None = None
        self.steps_per_s = 0.0
        self.acting: ActingLoop | None = None
        self.writers: list[InsertWriter] = []  # one per table of the agent
        self.variables: VariableClient | None = None
        self._learner_http = make_http_client(settings.learner_url, token=settings.token)
        self._replay_http = make_http_client(settings.replay_url, token=settings.token)
        self.learner = LearnerClient(self._learner_http)
        self.replay = ReplayClient(self._replay_http)
        self._env: gym.vector.VectorEnv | None = None
        self._acting_task: asyncio.Task[None] | None = None
        self._run_task: asyncio.Task[None] | None = None
        self._reporter: asyncio.Task[None] | None = None
        self._unreported: collections.deque[dict[str, float]] = collections.deque(maxlen=10_000)
        self._reported_steps = 0
        self.acknowledged_steps = 0  # steps and episodes the learner answered 200 for
        self.acknowledged_episodes = 0
        self._report_error: str | None = None
        self._stopping = asyncio.Event()

    @property
    def evaluation(self) -> bool:
        return self.settings.role == "evaluator"

    def start(self) -> None:
        self._run_task = asyncio.create_task(self._run(), name="actor")

    async def _run(self) -> None:
        try:
            await self._start_acting()
            self.state = "acting"
            await asyncio.shield(self._acting_task)
            self.state = "stopped"
        except asyncio.CancelledError:
            raise
        except Exception as e:
            self.state = "failed"
            self.last_error = f"{type(e).__name__}: {e}"
            log.exception("the actor failed")

    async def _start_acting(self) -> None:
        description = await self._read_experiment()
        self.env_id = str(description["env_id"])
        fleet = description.get("fleet") or {}
        self.num_envs = self.settings.num_envs or int(fleet.get("num_envs") or 1)
        self.seed = actor_seed(self.settings, int(description.get("seed") or 0))
        self._env = env = environment.make_vector_env(self.env_id, self.num_envs)
        experiment = experiment_from_description(description, environment.spec_of(self.env_id, env))
        agent, fleet = experiment.agent, experiment.fleet

        self.variables = VariableClient(self.learner, update_period=fleet.variable_update_period)
        self.state = "waiting_for_params"
        await self.variables.wait_first()
        self.variables.start()
        fleet_steps = 0 if self.evaluation else await self._fleet_steps()

        adder = None
        if not self.evaluation:
            self.writers = [
                InsertWriter(
                    self.replay,
                    name,
                    table_config=body,
                    max_pending=self.settings.max_pending_requests,
                    concurrency=self.settings.concurrent_inserts,
                    timeout_s=self.settings.insert_timeout_s,
                )
                for name, body in agent.tables.items()
            ]
            for writer in self.writers:
                writer.start()
            adder = agent.make_adder(
                {writer.table: writer.put for writer in self.writers},
                self.num_envs,
                Batching(fleet.insert_batch_size, fleet.insert_max_delay_s, time.monotonic),
            )
        self.acting = ActingLoop(
            env,
            agent.evaluation_policy if self.evaluation else agent.policy,
            self.variables,
            adder,
            seed=self.seed,
            placement=Placement(
                self.num_envs, self.settings.actor_index, self.settings.num_actors, fleet_steps
            ),
            writers=self.writers,
            record_version=records_version(agent.tables),
        )
        self._reporter = asyncio.create_task(self._report_forever(), name="reporter")
        log.info(
            "acting in %d x %s (agent %s, seed %d, role %s, params version %s)",
            self.num_envs,
            self.env_id,
            experiment.agent_name,
            self.seed,
            self.settings.role,
            self.variables.version,
        )
        self._acting_task = asyncio.create_task(self.acting.run(), name="acting")

    async def _read_experiment(self) -> dict[str, Any]:
        self.state = "waiting_for_learner"
        delay = 0.5
        while True:
            try:
                experiment = await self.learner.config()
                self.last_error = None
                log.info("experiment from %s: %s", self.settings.learner_url, experiment)
                return experiment
            except (ConnectionFailed, ServiceUnavailable) as e:
                self.last_error = f"config: {e}"
                log.info("waiting for the learner at %s: %s", self.settings.learner_url, e)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)

    async def _fleet_steps(self) -> int:
        """The env steps the fleet has taken (more than 0 in a resumed run or when this actor
        joins late), so that the policy's exploration schedule carries on; 0 when unknown."""
        try:
            return int((await self.learner.status()).get("actor_steps") or 0)
        except (ServiceError, ValueError, TypeError) as e:
            log.warning("fleet steps unknown, exploration starts afresh: %s", e)
            return 0

    async def _report_forever(self) -> None:
        last_steps, last_time = 0, time.monotonic()
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.settings.report_every_s):
                    await self._stopping.wait()
            now = time.monotonic()
            steps = self.acting.steps
            self.steps_per_s = (steps - last_steps) / max(now - last_time, 1e-9)
            last_steps, last_time = steps, now
            await self._report()
        await self._report()  # the last one, after acting stopped

    async def _report(self) -> None:
        """Posts the steps and episodes since the last report; keeps them if the learner is down."""
        if self.acting is None:
            return
        steps = self.acting.steps
        while self.acting.finished:
            self._unreported.append(self.acting.finished.popleft())
        if steps == self._reported_steps and not self._unreported:
            return
        episodes = list(self._unreported)
        try:
            await self.learner.report_episodes(
                actor_id=self.settings.actor_id,
                steps=steps - self._reported_steps,
                episodes=episodes,
                evaluation=self.evaluation,
            )
        except (ConnectionFailed, ServiceUnavailable) as e:
            self._report_error = f"report: {e}"
            log.warning("could not report to the learner (kept for later): %s", e)
            return
        except ServiceError as e:
            self._report_error = f"report refused: {e}"
            log.error("the learner refused a report of %d episodes (dropped): %s", len(episodes), e)
        else:
            self._report_error = None
            self.acknowledged_steps += steps - self._reported_steps
            self.acknowledged_episodes += len(episodes)
        self._reported_steps = steps
        for _ in episodes:
            self._unreported.popleft()

    async def stop(self) -> None:
        """Stops acting, flushes pending items to replay, reports a last time, closes all."""
        if self.state not in ("failed",):
            self.state = "stopping"
        if self.acting is not None:
            self.acting.stop()
        if self._acting_task is not None:
            grace = self.settings.shutdown_flush_s
            done, _ = await asyncio.wait([self._acting_task], timeout=grace)
            if not done:
                for writer in self.writers:
                    await writer.aclose()  # ends a wait for room in the writer's queue
            done, _ = await asyncio.wait([self._acting_task], timeout=grace)
            if not done:
                self._acting_task.cancel()
            await asyncio.gather(self._acting_task, return_exceptions=True)
        if self._run_task is not None:
            self._run_task.cancel()
            await asyncio.gather(self._run_task, return_exceptions=True)
        await asyncio.gather(*(w.drain(self.settings.shutdown_flush_s) for w in self.writers))
        if self._reporter is not None:
            self._stopping.set()  # the reporter finishes its request, then reports a last time
            done, _ = await asyncio.wait([self._reporter], timeout=10.0)
            if not done:
                log.warning("shutdown: the last report to the learner timed out")
                self._reporter.cancel()
                await asyncio.gather(self._reporter, return_exceptions=True)
        if self.variables is not None:
            await self.variables.aclose()
        if self._env is not None:
            self._env.close()
        await self._learner_http.close()
        await self._replay_http.close()
        status = self.status()
        log.info(
            "stopped after %d steps and %d episodes: %d items stored, %d dropped",
            status["steps"],
            status["episodes"],
            status["inserted_items"],
            status["dropped_items"],
        )

    def status(self) -> dict[str, Any]:
        acting, writers, variables = self.acting, self.writers, self.variables
        recent = list(acting.recent_returns) if acting else []
        errors = [
            e
            for e in (
                self.last_error,
                *(w.last_error for w in writers),
                variables and variables.last_error,
                self._report_error,
            )
            if e
        ]
        return {
            "actor_id": self.settings.actor_id,
            "role": self.settings.role,
            "state": self.state,
            "env_id": self.env_id,
            "num_envs": self.num_envs,
            "seed": self.seed,
            "steps": acting.steps if acting else 0,
            "episodes": acting.episodes if acting else 0,
            "steps_per_s": round(self.steps_per_s, 1),
            "return_mean_100": float(np.mean(recent)) if recent else None,
            "param_version": variables.version if variables else None,
            "params_fetched": variables.fetched if variables else 0,
            "params_not_modified": variables.not_modified if variables else 0,
            "inserted_items": sum(w.inserted_items for w in writers),
            "pending_items": sum(w.pending_items for w in writers)
            + (acting.pending_items if acting else 0),
            "rate_limited": sum(w.rate_limited for w in writers),
            "insert_retries": sum(w.retries for w in writers),
            "dropped_items": sum(w.dropped_items for w in writers),
            "acting_blocked_s": round(sum(w.blocked_s for w in writers), 3),
            "unreported_episodes": len(self._unreported),
            "acknowledged_steps": self.acknowledged_steps,
            "acknowledged_episodes": self.acknowledged_episodes,
            "last_error": errors[0] if errors else None,
        }
