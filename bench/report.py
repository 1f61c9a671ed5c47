"""Benchmark tables: printed with rich and written, as Markdown, into one delimited section of
docs/benchmarks.md (other benchmarks own other sections of the same file)."""

from __future__ import annotations

import os
import platform
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console
from rich.table import Table

DOCS_HEADER = (
    "# Benchmarks\n\n"
    "Each section is written by its benchmark (`make bench` runs them all). The machine they ran on"
    " is small and shared, so figures are ratios against baselines measured in the same run.\n"
)


@dataclass
class Section:
    title: str
    columns: list[str]
    rows: list[list[str]] = field(default_factory=list)
    note: str = ""


def print_sections(console: Console, sections: list[Section]) -> None:
    for section in sections:
        table = Table(title=section.title, title_justify="left", caption=section.note or None)
        for i, column in enumerate(section.columns):
            table.add_column(column, justify="left" if i == 0 else "right")
        for row in section.rows:
            table.add_row(*(_colour(cell) for cell in row))
        console.print(table)


def _colour(cell: str) -> str:
    if cell.endswith("PASS"):
        return f"{cell[:-4]}[green]PASS[/green]"
    if cell.endswith("FAIL"):
        return f"{cell[:-4]}[bold red]FAIL[/bold red]"
    return cell


def markdown(sections: list[Section]) -> str:
    out: list[str] = []
    for section in sections:
        out.append(f"### {section.title}\n")
        out.append("| " + " | ".join(section.columns) + " |")
        out.append("|" + "|".join(["---"] + ["---:"] * (len(section.columns) - 1)) + "|")
        out.extend("| " + " | ".join(row) + " |" for row in section.rows)
        if section.note:
            out.append(f"\n{section.note}")
        out.append("")
    return "\n".join(out)


def machine() -> str:
    model = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return (
        f"{os.cpu_count()} CPUs ({model}), Python {platform.python_version()},"
        f" {platform.system()} {platform.release()}; load average at start {load}"
    )


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")


def write_section(path: Path, key: str, body: str, *, header: str = DOCS_HEADER) -> None:
    """Replaces the text between ``<!-- bench:key:start -->`` and ``<!-- bench:key:end -->`` in
    ``path`` with ``body`` (appending the delimited section if it is not there yet; a new file
    starts with ``header``)."""
    start, end = f"<!-- bench:{key}:start -->", f"<!-- bench:{key}:end -->"
    block = f"{start}\n{body.strip()}\n{end}"
    text = path.read_text() if path.exists() else header
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.DOTALL)
    if pattern.search(text):
        text = pattern.sub(lambda _: block, text)
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    path.write_text(text)


def si(value: float) -> str:
    """12345 -> '12.3k'."""
    for unit, scale in (("M", 1e6), ("k", 1e3)):
        if abs(value) >= scale:
            return f"{value / scale:.3g}{unit}"
    return f"{value:.3g}"


def verdict(value: float, threshold: float, *, at_most: bool = False) -> str:
    ok = value <= threshold if at_most else value >= threshold
    return f"{value:.2f} {'PASS' if ok else 'FAIL'}"
