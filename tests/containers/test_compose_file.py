"""docker-compose.yml: valid under the Compose specification, and the promises the README makes.

compose-spec.json is the Compose Specification's JSON schema, vendored from the compose-spec
project (Apache License 2.0, see compose-spec.NOTICE), so that the check runs offline.
"""

from __future__ import annotations

import importlib
import json
import re
from pathlib import Path
from types import ModuleType
from typing import Any

import jsonschema
import pytest
import yaml
from pydantic_settings import BaseSettings

from tests.containers.compose import (
    COMPOSE_FILE,
    ENV_EXAMPLE,
    InterpolationError,
    interpolate,
    load_compose,
    read_env_file,
    service_environment,
)

SCHEMA = Path(__file__).with_name("compose-spec.json")
RLFLEET_SERVICES = ("replay", "learner", "actor", "evaluator")
EXPERIMENT_KEYS = {"AGENT", "ENV_ID", "SEED", "AGENT_CONFIG"}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load_compose(read_env_file(ENV_EXAMPLE))


def validator() -> jsonschema.Draft7Validator:
    schema = json.loads(SCHEMA.read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


def test_compose_file_validates_against_the_compose_spec(compose: dict[str, Any]) -> None:
    errors = [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
        for e in validator().iter_errors(compose)
    ]
    assert not errors, "\n".join(errors)


def test_the_schema_catches_a_broken_file(compose: dict[str, Any]) -> None:
    broken = json.loads(json.dumps(compose))
    broken["services"]["learner"]["depends_on"]["replay"]["condition"] = "service_ready"
    broken["services"]["actor"]["restrat"] = "always"
    messages = [e.message for e in validator().iter_errors(broken)]
    assert messages, "a typo and an unknown condition must not validate"


def test_services_and_their_commands(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == {"redis", *RLFLEET_SERVICES}
    commands = {name: services[name]["command"] for name in RLFLEET_SERVICES}
    assert commands == {
        "replay": ["python", "-m", "services.replay"],
        "learner": ["python", "-m", "services.learner"],
        "actor": ["python", "-m", "services.actor"],
        "evaluator": ["python", "-m", "services.actor"],
    }
    images = {services[name]["image"] for name in RLFLEET_SERVICES}
    assert len(images) == 1, f"one image for every rlfleet service, got {images}"
    for name in RLFLEET_SERVICES:
        assert services[name]["build"] == ".", f"{name} is built from the one Dockerfile"


def test_redis_is_official_append_only_on_a_named_volume(compose: dict[str, Any]) -> None:
    redis = compose["services"]["redis"]
    assert redis["image"].split(":")[0] == "redis"
    command = redis["command"]
    assert command[0] == "redis-server"
    assert command[command.index("--appendonly") + 1] == "yes"
    source, target = redis["volumes"][0].split(":")
    assert target == "/data" and source in compose["volumes"]
    assert redis["healthcheck"]["test"][:2] == ["CMD", "redis-cli"]


def test_every_service_has_a_health_check_and_waits_for_healthy_deps(
    compose: dict[str, Any],
) -> None:
    services = compose["services"]
    for name, spec in services.items():
        assert "healthcheck" in spec, f"{name} has no health check"
        assert not spec["healthcheck"].get("disable"), name
        assert spec.get("restart") in {"always", "unless-stopped"}, f"{name} is not restarted"
        for dep, cond in (spec.get("depends_on") or {}).items():
            assert cond["condition"] == "service_healthy", f"{name} -> {dep}"
            assert "healthcheck" in services[dep]
    assert set(services["replay"]["depends_on"]) == {"redis"}
    assert set(services["learner"]["depends_on"]) == {"replay"}
    assert set(services["actor"]["depends_on"]) == {"learner", "replay"}
    assert "learner" in services["evaluator"]["depends_on"]


def test_environment_wires_the_services_by_host_name(compose: dict[str, Any]) -> None:
    env = {name: service_environment(compose["services"][name]) for name in RLFLEET_SERVICES}
    assert env["replay"]["REDIS_URL"] == "redis://redis:6379/0"
    assert env["replay"]["PORT"] == "8000"
    assert env["learner"]["REPLAY_URL"] == "http://replay:8000"
    assert env["learner"]["PORT"] == "8001"
    for name in ("actor", "evaluator"):
        assert env[name]["LEARNER_URL"] == "http://learner:8001"
        assert env[name]["REPLAY_URL"] == "http://replay:8000"
        assert env[name]["PORT"] == "8002"
        assert "ACTOR_ID" not in env[name], "replicas take their host name as ACTOR_ID"
    assert env["actor"]["ROLE"] == "actor"
    assert env["evaluator"]["ROLE"] == "evaluator"


def test_the_experiment_is_chosen_once_and_only_the_learner_gets_it(
    compose: dict[str, Any],
) -> None:
    raw = yaml.safe_load(COMPOSE_FILE.read_text())
    assert set(raw["x-experiment"]) == EXPERIMENT_KEYS
    text = COMPOSE_FILE.read_text()
    for key in EXPERIMENT_KEYS:
        found = re.findall(rf"^\s+{key}:", text, re.MULTILINE)
        assert len(found) == 1, f"{key} is set in more than one place"
    env = {name: service_environment(compose["services"][name]) for name in RLFLEET_SERVICES}
    assert set(env["learner"]) >= EXPERIMENT_KEYS
    for name in ("replay", "actor", "evaluator"):
        assert not EXPERIMENT_KEYS & set(env[name]), f"{name} must read the experiment elsewhere"
    assert isinstance(json.loads(env["learner"]["AGENT_CONFIG"]), dict)


@pytest.mark.parametrize("name", RLFLEET_SERVICES)
def test_each_variable_is_a_setting_of_the_service_and_its_value_passes(
    compose: dict[str, Any], name: str
) -> None:
    """The service's own settings class accepts the environment the file gives it."""
    module = compose["services"][name]["command"][2]
    settings_cls = _settings_class(importlib.import_module(f"{module}.settings"))
    fields = {
        (f.validation_alias if isinstance(f.validation_alias, str) else key).upper(): key
        for key, f in settings_cls.model_fields.items()
    }
    env = service_environment(compose["services"][name])
    unknown = set(env) - set(fields)
    assert not unknown, f"{name}: {sorted(unknown)} are not settings of {settings_cls.__name__}"
    settings_cls(**{fields[k]: v for k, v in env.items() if k in fields})  # validates


def _settings_class(module: ModuleType) -> type[BaseSettings]:
    found = [
        obj
        for obj in vars(module).values()
        if isinstance(obj, type)
        and issubclass(obj, BaseSettings)
        and obj is not BaseSettings
        and obj.__module__ == module.__name__
    ]
    assert len(found) == 1, f"{module.__name__} should define one settings class, has {found}"
    return found[0]


def test_learner_keeps_checkpoints_on_a_volume_and_publishes_its_port(
    compose: dict[str, Any],
) -> None:
    learner = compose["services"]["learner"]
    env = service_environment(learner)
    mounts = dict(reversed(v.split(":")[:2]) for v in learner["volumes"])
    assert env["CHECKPOINT_DIR"] in mounts, "CHECKPOINT_DIR must be a mounted volume"
    assert mounts[env["CHECKPOINT_DIR"]] in compose["volumes"]
    assert env["RUN_DIR"] in mounts
    assert learner["ports"] == ["127.0.0.1:8001:8001"]


def test_actors_have_no_fixed_host_port_so_they_scale(compose: dict[str, Any]) -> None:
    for name in ("actor", "evaluator"):
        spec = compose["services"][name]
        assert "container_name" not in spec and "hostname" not in spec
        for port in spec.get("ports", []):
            parts = str(port).split(":")
            host_port = parts[-2] if len(parts) > 1 else ""
            assert host_port == "", f"{name} publishes a fixed host port: {port}"


def test_shared_settings_are_written_once() -> None:
    text = COMPOSE_FILE.read_text()
    raw = yaml.safe_load(text)
    assert {"x-common-env", "x-rlfleet"} <= set(raw)
    assert len(re.findall(r"^\s+RLFLEET_TOKEN:", text, re.MULTILINE)) == 1
    assert text.count("restart: unless-stopped") == 2  # the x-rlfleet anchor and redis


def test_the_token_comes_from_dot_env() -> None:
    example = read_env_file(ENV_EXAMPLE)
    assert example["RLFLEET_TOKEN"]
    compose = load_compose({"RLFLEET_TOKEN": "s3cret"})
    for name in RLFLEET_SERVICES:
        assert service_environment(compose["services"][name])["RLFLEET_TOKEN"] == "s3cret"
    with pytest.raises(InterpolationError, match="RLFLEET_TOKEN"):
        load_compose({})
    gitignore = (COMPOSE_FILE.parent / ".gitignore").read_text().split()
    assert ".env" in gitignore


@pytest.mark.parametrize(
    ("text", "env", "expected"),
    [
        ("${A:-x}", {}, "x"),
        ("${A:-x}", {"A": ""}, "x"),
        ("${A-x}", {"A": ""}, ""),
        ("${A}/$B", {"A": "1", "B": "2"}, "1/2"),
        ("$$A", {"A": "1"}, "$A"),
        ("${A:+y}", {"A": "1"}, "y"),
    ],
)
def test_interpolation_follows_compose(text: str, env: dict[str, str], expected: str) -> None:
    assert interpolate(text, env) == expected
