"""Prints the fuzz counts (cases tried and failures per endpoint) at the end of the session, and
writes them to ``FUZZ_REPORT`` (a JSON file) when that is set (``make fuzz`` does)."""

from __future__ import annotations

import json
import os
from typing import Any

from tests.fuzz.harness import COUNTS, EXAMPLES


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not COUNTS:
        return
    write = terminalreporter.write_line
    terminalreporter.section(f"fuzz: cases per endpoint (FUZZ_EXAMPLES={EXAMPLES})")
    for endpoint, counts in sorted(COUNTS.items()):
        statuses = " ".join(f"{k}:{v}" for k, v in sorted(counts.items()) if k.endswith("xx"))
        write(
            f"{endpoint:<62} {counts['cases']:>5} cases {counts['failures']:>2} failures  {statuses}"
        )
    total = sum(c["cases"] for c in COUNTS.values())
    failures = sum(c["failures"] for c in COUNTS.values())
    write(f"{'total':<62} {total:>5} cases {failures:>2} failures")
    path = os.environ.get("FUZZ_REPORT")
    if path:
        with open(path, "w") as f:
            json.dump(
                {"examples": EXAMPLES, "endpoints": {k: dict(v) for k, v in COUNTS.items()}},
                f,
                indent=1,
            )
