"""``rlfleet status <url>``: one service's ``/status``, pretty."""

from __future__ import annotations

import json
from typing import Any

import httpx
from rich.console import Console
from rich.pretty import Pretty
from rich.table import Table


def status_url(url: str) -> str:
    url = url.rstrip("/")
    if "://" not in url:
        url = f"http://{url}"
    return url if url.endswith("/status") else f"{url}/status"


def print_status(url: str, *, console: Console, token: str | None = None, raw: bool = False) -> int:
    """Prints the ``/status`` of the service at ``url``; 0 when it answered, 1 otherwise."""
    target = status_url(url)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        response = httpx.get(target, headers=headers, timeout=5.0)
    except httpx.HTTPError as e:
        console.print(f"[red]{target} did not answer:[/red] {e!r}")
        return 1
    if response.status_code != 200:
        console.print(f"[red]{target} answered {response.status_code}:[/red] {response.text}")
        return 1
    try:
        status: Any = response.json()
    except ValueError:
        console.print(f"[red]{target} did not answer JSON:[/red] {response.text[:200]}")
        return 1
    if raw or not isinstance(status, dict):
        console.print_json(json.dumps(status))
        return 0
    table = Table(title=target, show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value")
    for key, value in status.items():
        table.add_row(key, Pretty(value) if isinstance(value, dict | list) else _scalar(value))
    console.print(table)
    return 0


def _scalar(value: Any) -> str:
    if value is None:
        return "[dim]null[/dim]"
    if isinstance(value, float):
        return f"{value:,.3f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)
