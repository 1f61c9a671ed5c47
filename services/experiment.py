"""One experiment: an agent, its config, the environment's spec and a seed, built in one place.

The learner, the actors, the in-process runner and ``rlfleet eval`` all build it here, so they
agree on what an ``AGENT`` name means and refuse the same mistakes with the same one-line reasons:

- ``AGENT`` is a short name (``dqn`` -> ``shared/agents/dqn/``) or any importable module path
  (``mylab.agents.my_dqn``) whose module defines ``Config`` and ``make_agent``
  (``shared/interfaces.py``); nothing here, or anywhere in ``services/``, names an agent;
- ``AGENT_CONFIG`` overrides are merged over the ``Config`` defaults and checked by it;
- the agent sees the environment's spaces (read once from gymnasium) and may refuse them;
- its tables must be valid replay tables, and the fleet knobs must fit their rate limiters: an
  insert request and a sample request that cannot both fit the limiter's window would let actors
  and learner wait for each other for ever (deadlock).
"""

from __future__ import annotations

import dataclasses
import importlib
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import gymnasium
import numpy as np
from pydantic import ValidationError

from services.replay.config import TableConfig
from shared.config import config_from_dict, config_to_dict
from shared.interfaces import Agent, EnvSpec, Fleet

AGENTS_PACKAGE = "shared.agents"


class ExperimentError(ValueError):
    """The experiment cannot be built; the message says why in one line."""


def load_agent(name: str) -> ModuleType:
    """The agent module ``name`` names (a short name or a module path), checked for the contract."""
    path = name if "." in name else f"{AGENTS_PACKAGE}.{name}"
    try:
        module = importlib.import_module(path)
    except ModuleNotFoundError as e:
        if e.name is not None and path.startswith(e.name):
            raise ExperimentError(
                f"AGENT={name!r}: no module {path!r}; give a short name of shared/agents/ or an"
                " importable module path (e.g. mylab.agents.my_dqn)"
            ) from e
        raise ExperimentError(f"AGENT={name!r}: importing {path} failed: {e!r}") from e
    except Exception as e:  # the agent's own code failed at import: say so in one line
        raise ExperimentError(f"AGENT={name!r}: importing {path} failed: {e!r}") from e
    missing = []
    config = getattr(module, "Config", None)
    if not (isinstance(config, type) and dataclasses.is_dataclass(config)):
        missing.append("Config (a dataclass of the agent's hyper-parameters)")
    if not callable(getattr(module, "make_agent", None)):
        missing.append("make_agent(config, spec) -> shared.interfaces.Agent")
    if missing:
        raise ExperimentError(
            f"AGENT={name!r}: module {path} does not fulfil the agent contract"
            f" (shared/interfaces.py): it has no {' and no '.join(missing)}"
        )
    return module


def agent_name(module: ModuleType) -> str:
    """What checkpoints and ``GET /config`` call the agent: its short name, or its module path."""
    short = module.__name__.removeprefix(f"{AGENTS_PACKAGE}.")
    return short if "." not in short else module.__name__


def env_spec(env_id: str) -> EnvSpec:
    """The spaces of one ``env_id`` environment (made once, then closed)."""
    try:
        env = gymnasium.make(env_id)
    except gymnasium.error.UnregisteredEnv as e:
        raise ExperimentError(
            f"ENV_ID={env_id!r} is not a registered gymnasium environment: {e}"
        ) from e
    except gymnasium.error.Error as e:  # e.g. an extra (MuJoCo, Atari) that is not installed
        raise ExperimentError(f"ENV_ID={env_id!r} cannot be made: {e}") from e
    try:
        return EnvSpec(env_id, env.observation_space, env.action_space)
    finally:
        env.close()


def describe_space(space: gymnasium.Space) -> dict[str, Any]:
    """A JSON-able description of a space; equal descriptions mean interchangeable spaces."""
    kind = type(space).__name__
    if isinstance(space, gymnasium.spaces.Discrete):
        return {"type": kind, "n": int(space.n), "start": int(space.start)}
    if isinstance(space, gymnasium.spaces.Box):
        return {
            "type": kind,
            "shape": list(space.shape),
            "dtype": np.dtype(space.dtype).str,
            "low": _bounds(space.low),
            "high": _bounds(space.high),
        }
    if isinstance(space, gymnasium.spaces.MultiDiscrete):
        return {"type": kind, "nvec": np.asarray(space.nvec).tolist()}
    if isinstance(space, gymnasium.spaces.MultiBinary):
        return {"type": kind, "n": np.asarray(space.n).tolist()}
    return {"type": kind, "repr": str(space)}


def _bounds(values: np.ndarray) -> Any:
    """One number when all are equal, else a list; an infinite bound (no bound) is None."""
    flat = np.asarray(values, np.float64).reshape(-1)
    as_json = [float(v) if np.isfinite(v) else None for v in flat]
    return as_json[0] if len(set(as_json)) == 1 else as_json


def describe_spec(spec: EnvSpec) -> dict[str, Any]:
    return {
        "env_id": spec.env_id,
        "observation_space": describe_space(spec.observation_space),
        "action_space": describe_space(spec.action_space),
    }


@dataclass(frozen=True)
class Experiment:
    """Everything a home needs to run one agent on one environment."""

    agent_name: str
    config: Any  # the agent's Config
    spec: EnvSpec
    seed: int
    agent: Agent
    fleet: Fleet  # the agent's, with the learner's BATCHES_PER_SAMPLE when it was set
    tables: dict[str, TableConfig]

    @property
    def env_id(self) -> str:
        return self.spec.env_id

    def describe(self) -> dict[str, Any]:
        """``GET /config``: what an actor needs to build the same experiment."""
        return {
            "agent": self.agent_name,
            "agent_config": config_to_dict(self.config),
            "env_id": self.env_id,
            "env_spec": describe_spec(self.spec),
            "seed": self.seed,
            "tables": {name: dict(body) for name, body in self.agent.tables.items()},
            "fleet": dataclasses.asdict(self.fleet),
        }


def build_experiment(
    agent: str,
    env_id: str,
    *,
    seed: int = 0,
    overrides: dict[str, Any] | None = None,
    spec: EnvSpec | None = None,
    batches_per_sample: int | None = None,
) -> Experiment:
    """Loads, configures and checks the agent for ``env_id`` (``spec``, when the caller has the
    environment already). Raises ``ExperimentError`` with the reason."""
    module = load_agent(agent)
    try:
        config = config_from_dict(module.Config, overrides or {})
    except (TypeError, ValueError) as e:
        raise ExperimentError(f"AGENT_CONFIG does not fit the {agent} config: {e}") from e
    spec = spec or env_spec(env_id)
    try:
        built = module.make_agent(config, spec)
    except ValueError as e:  # UnsupportedEnvironment, or a config the agent refuses
        raise ExperimentError(f"AGENT={agent!r} on {env_id}: {e}") from e
    if not isinstance(built, Agent):
        raise ExperimentError(
            f"AGENT={agent!r}: make_agent returned {type(built).__name__}, not a"
            " shared.interfaces.Agent"
        )
    if built.learner.table not in built.tables:
        raise ExperimentError(
            f"AGENT={agent!r}: the learner samples table {built.learner.table!r}, which is not"
            f" among the agent's tables {sorted(built.tables)}"
        )
    tables = {}
    for name, body in built.tables.items():
        try:
            tables[name] = TableConfig.model_validate(body)
        except ValidationError as e:
            reasons = "; ".join(err["msg"].removeprefix("Value error, ") for err in e.errors())
            raise ExperimentError(f"AGENT={agent!r}: table {name!r} is not valid: {reasons}") from e
    fleet = built.fleet
    if batches_per_sample is not None:
        fleet = dataclasses.replace(fleet, batches_per_sample=batches_per_sample)
    check_fleet(fleet, tables, built.learner.table, overridden=batches_per_sample is not None)
    return Experiment(
        agent_name=agent_name(module),
        config=config,
        spec=spec,
        seed=seed,
        agent=built,
        fleet=fleet,
        tables=tables,
    )


def check_fleet(
    fleet: Fleet, tables: dict[str, TableConfig], sampled: str, *, overridden: bool = False
) -> None:
    """Refuses knobs with which an insert request and a sample request cannot both fit a table's
    rate-limiter window ``max_diff - min_diff``: each side could wait for the other (deadlock)."""
    for name, table in tables.items():
        limiter = table.limiter
        window = limiter.max_diff - limiter.min_diff
        insert = fleet.insert_batch_size * limiter.samples_per_insert
        sample = fleet.batch_size * fleet.batches_per_sample if name == sampled else 0
        if insert + sample > window:
            k = "BATCHES_PER_SAMPLE" if overridden else "batches_per_sample"
            raise ExperimentError(
                f"table {name!r}: insert_batch_size * samples_per_insert"
                f" ({fleet.insert_batch_size} * {limiter.samples_per_insert:g}) + batch_size * {k}"
                f" ({fleet.batch_size} * {fleet.batches_per_sample}) = {insert + sample:g} items"
                f" do not fit the rate limiter's window max_diff - min_diff = {window:g}: actors"
                " and learner could block each other for ever (deadlock); widen the window"
                f" (error_buffer) or send smaller requests (insert_batch_size, {k})"
            )


def experiment_from_description(description: dict[str, Any], spec: EnvSpec) -> Experiment:
    """The learner's experiment (``GET /config``) rebuilt by an actor whose environment has
    ``spec``; refused when that environment differs from the learner's."""
    mine, theirs = describe_spec(spec), description.get("env_spec")
    if theirs is not None and mine != theirs:
        raise ExperimentError(
            f"this actor's {spec.env_id} has spaces {mine}, the learner's experiment has"
            f" {theirs}: run both on the same environment"
        )
    return build_experiment(
        str(description["agent"]),
        spec.env_id,
        seed=int(description.get("seed") or 0),
        overrides=description.get("agent_config") or {},
        spec=spec,
    )
