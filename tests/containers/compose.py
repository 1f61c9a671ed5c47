"""docker-compose.yml read the way Compose reads it: YAML anchors and merge keys, then variable
interpolation from an ``.env`` file (``${VAR}``, ``${VAR:-default}``, ``${VAR:?error}``, ``$$``).

tests/containers/emulation.py runs what this reads; the other tests check it statically.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from tests.support import ROOT

COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
ENV_EXAMPLE = ROOT / ".env.example"

_VARIABLE = re.compile(
    r"\$(?:(?P<escaped>\$)"
    r"|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}"
    r"|(?P<named>[A-Za-z_][A-Za-z0-9_]*))"
)


class InterpolationError(ValueError):
    """A ``${VAR:?message}`` whose variable is missing, as ``docker compose config`` reports it."""


def read_env_file(path: Path) -> dict[str, str]:
    """``KEY=VALUE`` lines of a Compose ``.env`` file (comments, blank lines, quotes handled)."""
    values: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep:
            raise ValueError(f"{path}: not KEY=VALUE: {line!r}")
        value = value.strip()
        if value[:1] in {"'", '"'} and value.endswith(value[0]) and len(value) >= 2:
            value = value[1:-1]
        else:
            value = value.split(" #", 1)[0].strip()
        values[key.strip()] = value
    return values


def interpolate(text: str, env: Mapping[str, str]) -> str:
    """Compose's ``$VAR``, ``${VAR}``, ``${VAR:-default}``, ``${VAR:?err}``, ``$$`` rules."""

    def substitute(m: re.Match[str]) -> str:
        if m["escaped"]:
            return "$"
        name = m["braced"] or m["named"]
        value = env.get(name)
        op, arg = m["op"], m["arg"] or ""
        unset_or_empty = value is None or (value == "" and op is not None and op.startswith(":"))
        if op in {":-", "-"}:
            return arg if unset_or_empty else str(value)
        if op in {":?", "?"}:
            if unset_or_empty:
                raise InterpolationError(f"required variable {name} is missing a value: {arg}")
            return str(value)
        if op in {":+", "+"}:
            return "" if unset_or_empty else arg
        return "" if value is None else str(value)

    return _VARIABLE.sub(substitute, text)


def _interpolate_tree(node: Any, env: Mapping[str, str]) -> Any:
    if isinstance(node, str):
        return interpolate(node, env)
    if isinstance(node, list):
        return [_interpolate_tree(v, env) for v in node]
    if isinstance(node, dict):
        return {k: _interpolate_tree(v, env) for k, v in node.items()}
    return node


def load_compose(env: Mapping[str, str], path: Path = COMPOSE_FILE) -> dict[str, Any]:
    """The compose file as Compose sees it: anchors merged, ``${...}`` filled in from ``env``."""
    return _interpolate_tree(yaml.safe_load(path.read_text()), env)


def service_environment(service: Mapping[str, Any]) -> dict[str, str]:
    """A service's ``environment`` (mapping or ``KEY=VALUE`` list) as strings."""
    if "env_file" in service:
        raise NotImplementedError("the emulation reads `environment` only, not env_file")
    raw = service.get("environment") or {}
    if isinstance(raw, list):
        raw = dict(item.split("=", 1) for item in raw)
    return {k: _env_value(v) for k, v in raw.items()}


def _env_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def image_healthcheck(dockerfile: Path = DOCKERFILE) -> list[str]:
    """The exec-form ``CMD [...]`` of the Dockerfile's ``HEALTHCHECK`` instruction."""
    text = re.sub(r"\\\n", " ", dockerfile.read_text())
    for line in text.splitlines():
        if line.strip().upper().startswith("HEALTHCHECK"):
            cmd = re.search(r"\bCMD\s+(\[.*\])\s*$", line)
            if cmd is None:
                raise ValueError(f"HEALTHCHECK is not in exec form (CMD [...]): {line!r}")
            return json.loads(cmd.group(1))
    raise ValueError(f"{dockerfile} has no HEALTHCHECK")
