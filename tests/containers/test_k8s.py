"""deploy/k8s: valid Kubernetes objects (offline, kubernetes-validate's schemas), and the same
commands and environment as docker-compose.yml."""

from __future__ import annotations

import re
from typing import Any

import kubernetes_validate
import pytest
import yaml
from kubernetes_validate.utils import latest_version

from tests.containers.compose import (
    ENV_EXAMPLE,
    load_compose,
    read_env_file,
    service_environment,
)
from tests.containers.kustomize import (
    K8S_DIR,
    kubectl,
    pod_containers,
    render,
    render_here,
    render_with_kubectl,
)

RLFLEET_SERVICES = ("replay", "learner", "actor", "evaluator")
# The oldest Kubernetes the manifests are written for, and the newest the validator knows.
VERSIONS = ("1.28", latest_version())
HPA = K8S_DIR / "hpa-actor.yaml"


@pytest.fixture(scope="module")
def objects() -> dict[tuple[str, str], dict[str, Any]]:
    return {(d["kind"], d["metadata"]["name"]): d for d in render()}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load_compose(read_env_file(ENV_EXAMPLE))


def container(objects: dict[tuple[str, str], dict[str, Any]], kind: str, name: str) -> dict:
    (only,) = [c for c in pod_containers(objects[(kind, name)]) if c["name"] == name]
    return only


def effective_env(
    objects: dict[tuple[str, str], dict[str, Any]], spec: dict[str, Any]
) -> tuple[dict[str, str], set[str]]:
    """(variable -> value, variables that come from a Secret) of one container."""
    env: dict[str, str] = {}
    secret: set[str] = set()
    for source in spec.get("envFrom", []):
        if "configMapRef" in source:
            env.update(objects[("ConfigMap", source["configMapRef"]["name"])]["data"])
        else:
            data = objects[("Secret", source["secretRef"]["name"])]
            keys = {**data.get("data", {}), **data.get("stringData", {})}
            env.update(keys)
            secret |= set(keys)
    for var in spec.get("env", []):
        if "valueFrom" in var:
            assert "secretKeyRef" in var["valueFrom"], var
            secret.add(var["name"])
            env[var["name"]] = "<secret>"
        else:
            env[var["name"]] = var["value"]
            secret.discard(var["name"])
    return env, secret


@pytest.mark.parametrize("version", VERSIONS)
def test_every_object_validates(version: str) -> None:
    docs = [*render(), *yaml.safe_load_all(HPA.read_text())]
    errors = []
    for doc in docs:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as e:
            errors.append(f"{doc['kind']}/{doc['metadata']['name']}: {e.message} at {e.path}")
    assert not errors, "\n".join(errors)


def test_the_validator_refuses_a_wrong_field() -> None:
    deployment = next(d for d in render() if d["kind"] == "Deployment")
    deployment["spec"]["replica"] = 2
    with pytest.raises(kubernetes_validate.ValidationError, match="replica"):
        kubernetes_validate.validate(deployment, VERSIONS[0], strict=True)


def test_kustomize_renders_what_the_tests_render() -> None:
    """kubectl's kustomize and the small renderer agree (kubectl is on the machine images)."""
    if kubectl() is None:
        pytest.skip("kubectl is not installed: the manifests were validated via render_here")
    by_key = {(d["kind"], d["metadata"]["name"]): d for d in render_with_kubectl()}
    assert by_key == {(d["kind"], d["metadata"]["name"]): d for d in render_here()}


def test_the_pieces_are_there(objects: dict[tuple[str, str], dict[str, Any]]) -> None:
    assert {
        ("StatefulSet", "redis"),
        ("Service", "redis"),
        ("Deployment", "replay"),
        ("Service", "replay"),
        ("Deployment", "learner"),
        ("Service", "learner"),
        ("PersistentVolumeClaim", "learner-data"),
        ("Deployment", "actor"),
        ("Deployment", "evaluator"),
        ("Secret", "rlfleet-token"),
        ("ConfigMap", "rlfleet-experiment"),
    } <= set(objects)
    redis = objects[("StatefulSet", "redis")]
    assert redis["spec"]["volumeClaimTemplates"], "Redis keeps its data on a volume"
    learner = objects[("Deployment", "learner")]["spec"]["template"]["spec"]
    claims = [v["persistentVolumeClaim"]["claimName"] for v in learner["volumes"]]
    assert claims == ["learner-data"]


def test_actor_replicas_are_the_knob_and_the_hpa_scales_them(
    objects: dict[tuple[str, str], dict[str, Any]],
) -> None:
    kustomization = yaml.safe_load((K8S_DIR / "kustomization.yaml").read_text())
    knob = {r["name"]: r["count"] for r in kustomization["replicas"]}
    assert objects[("Deployment", "actor")]["spec"]["replicas"] == knob["actor"]
    (hpa,) = yaml.safe_load_all(HPA.read_text())
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", "actor")
    assert ("Deployment", "actor") in objects
    requests = container(objects, "Deployment", "actor")["resources"]["requests"]
    assert "cpu" in requests, "CPU utilisation is relative to the request"


@pytest.mark.parametrize("name", RLFLEET_SERVICES)
def test_probes_ask_healthz(objects: dict[tuple[str, str], dict[str, Any]], name: str) -> None:
    spec = container(objects, "Deployment", name)
    ports = {p["name"]: p["containerPort"] for p in spec["ports"]}
    for probe in ("readinessProbe", "livenessProbe"):
        get = spec[probe]["httpGet"]
        assert get["path"] == "/healthz"
        assert get["port"] in ports or get["port"] in ports.values()


def test_pods_run_as_the_images_non_root_user(
    objects: dict[tuple[str, str], dict[str, Any]],
) -> None:
    dockerfile_user = re.search(
        r"^USER (\d+)", (K8S_DIR.parents[1] / "Dockerfile").read_text(), re.M
    )
    assert dockerfile_user
    for name in RLFLEET_SERVICES:
        pod = objects[("Deployment", name)]["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] == int(dockerfile_user.group(1))


@pytest.mark.parametrize("name", RLFLEET_SERVICES)
def test_same_command_and_environment_as_compose(
    objects: dict[tuple[str, str], dict[str, Any]], compose: dict[str, Any], name: str
) -> None:
    service = compose["services"][name]
    spec = container(objects, "Deployment", name)
    assert spec["command"] == service["command"]
    assert spec["image"].split(":")[0] == service["image"].split(":")[0]
    env, secret = effective_env(objects, spec)
    compose_env = service_environment(service)
    assert set(env) == set(compose_env)
    assert secret == {"RLFLEET_TOKEN"}, "the token comes from the Secret"
    assert {k: v for k, v in env.items() if k not in secret} == {
        k: v for k, v in compose_env.items() if k not in secret
    }
    assert [p["containerPort"] for p in spec["ports"]] == [int(env["PORT"])]
    compose_mounts = {v.split(":")[1] for v in service.get("volumes", [])}
    assert {m["mountPath"] for m in spec.get("volumeMounts", [])} == compose_mounts


def test_redis_is_the_same_as_in_compose(
    objects: dict[tuple[str, str], dict[str, Any]], compose: dict[str, Any]
) -> None:
    service = compose["services"]["redis"]
    spec = container(objects, "StatefulSet", "redis")
    assert spec["image"] == service["image"]
    assert spec["command"] == service["command"]
    assert [m["mountPath"] for m in spec["volumeMounts"]] == ["/data"]
    assert spec["readinessProbe"]["exec"]["command"] == service["healthcheck"]["test"][1:]


def test_every_address_in_the_environment_is_a_service(
    objects: dict[tuple[str, str], dict[str, Any]], compose: dict[str, Any]
) -> None:
    """redis:6379, replay:8000, learner:8001 resolve to a Service port in the cluster too."""
    for name in RLFLEET_SERVICES:
        for value in service_environment(compose["services"][name]).values():
            for host, port in re.findall(r"://([a-z0-9-]+):(\d+)", value):
                svc = objects.get(("Service", host))
                assert svc is not None, f"{name}: no Service {host}"
                assert int(port) in [p["port"] for p in svc["spec"]["ports"]], (host, port)
