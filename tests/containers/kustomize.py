"""Rendering deploy/k8s: with kustomize (``kubectl kustomize``) where it is installed, and with a
small renderer of the few kustomize features the base uses everywhere, so the manifests are
validated on any machine. Where kubectl is present, the tests check that both agree.
"""

from __future__ import annotations

import copy
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

from tests.support import ROOT

K8S_DIR = ROOT / "deploy" / "k8s"
SUPPORTED = {"apiVersion", "kind", "labels", "resources", "images", "replicas"}


def kubectl() -> str | None:
    return shutil.which("kubectl")


def render_with_kubectl(directory: Path = K8S_DIR) -> list[dict[str, Any]]:
    binary = kubectl()
    if binary is None:
        raise FileNotFoundError("kubectl is not on the PATH")
    done = subprocess.run(
        [binary, "kustomize", str(directory)], capture_output=True, text=True, timeout=60
    )
    if done.returncode != 0:
        raise RuntimeError(f"kubectl kustomize {directory} failed:\n{done.stderr}")
    return [d for d in yaml.safe_load_all(done.stdout) if d]


def render_here(directory: Path = K8S_DIR) -> list[dict[str, Any]]:
    """The base's resources with its ``labels``, ``images`` and ``replicas`` applied."""
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    unsupported = set(kustomization) - SUPPORTED
    if unsupported:
        raise NotImplementedError(f"render_here does not know {sorted(unsupported)}")
    docs = [
        d
        for resource in kustomization["resources"]
        for d in yaml.safe_load_all((directory / resource).read_text())
        if d
    ]
    for entry in kustomization.get("labels", []):
        if entry.get("includeSelectors") or entry.get("includeTemplates"):
            raise NotImplementedError("labels into selectors or templates")
        for doc in docs:
            doc.setdefault("metadata", {}).setdefault("labels", {}).update(entry["pairs"])
    for image in kustomization.get("images", []):
        for container in (c for doc in docs for c in pod_containers(doc)):
            if image_name(container["image"]) == image["name"]:
                name = image.get("newName", image["name"])
                tag = image.get("newTag")
                container["image"] = f"{name}:{tag}" if tag else name
    for replicas in kustomization.get("replicas", []):
        for doc in docs:
            if doc["metadata"]["name"] == replicas["name"] and "replicas" in doc.get("spec", {}):
                doc["spec"]["replicas"] = replicas["count"]
    return copy.deepcopy(docs)


def image_name(image: str) -> str:
    """``redis:7.4-alpine`` -> ``redis`` (a registry port is not a tag)."""
    name = image.split("@")[0]
    last = name.rsplit("/", 1)[-1]
    return name[: len(name) - len(last)] + last.split(":")[0]


def pod_containers(doc: dict[str, Any]) -> list[dict[str, Any]]:
    spec = doc.get("spec", {}).get("template", {}).get("spec", {})
    return [*spec.get("initContainers", []), *spec.get("containers", [])]


def render() -> list[dict[str, Any]]:
    """kustomize's rendering where kubectl is installed, else :func:`render_here`."""
    return render_with_kubectl() if kubectl() else render_here()
