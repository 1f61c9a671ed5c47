"""The services know no agent: no module of services/ imports one, statically or at run time."""

from __future__ import annotations

import ast
import json
import subprocess
import sys

from tests.support import ROOT

AGENTS = "shared.agents"


def _imports(path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def test_no_module_of_services_imports_an_agent() -> None:
    offenders = {
        str(path.relative_to(ROOT)): sorted(i for i in _imports(path) if i.startswith(AGENTS))
        for path in (ROOT / "services").rglob("*.py")
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_importing_every_service_module_loads_no_agent() -> None:
    """The run-time import graph: every module of services/ imported, then sys.modules read."""
    script = f"""
import importlib, json, pkgutil, sys
import services
for info in pkgutil.walk_packages(services.__path__, "services."):
    if not info.name.endswith("__main__"):
        importlib.import_module(info.name)
print(json.dumps(sorted(m for m in sys.modules if m.startswith("{AGENTS}."))))
"""
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.splitlines()[-1]) == []
