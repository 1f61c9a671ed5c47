"""Live progress of a run: a rich table on a terminal, plain lines every few seconds elsewhere."""

from __future__ import annotations

import time
from typing import Any, NamedTuple, Protocol

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from services.launcher.progress import Snapshot, Status


class Row(NamedTuple):
    """One line of the live table: a service process, or a part of the in-process run."""

    name: str  # "replay", "learner", "actor-0", "evaluator"
    kind: str  # "replay", "learner" or "actor": which cells it has
    state: str  # "running", "starting", "exited 1", ...
    status: Status | None  # its /status (replay: {"tables": [...]}); None before it answers


class Display(Protocol):
    def start(self) -> None: ...

    def update(self, snapshot: Snapshot, rows: list[Row]) -> None: ...

    def stop(self) -> None: ...


def make_display(console: Console, *, name: str, target: float | None) -> Display:
    if console.is_terminal:
        return LiveDisplay(console, name=name, target=target)
    return PlainDisplay(console, target=target)


def _num(value: Any, fmt: str = ",.0f") -> str:
    return "-" if value is None else format(value, fmt)


def headline(s: Snapshot, target: float | None) -> str:
    """One line: elapsed time, env steps, updates, returns, params, replay."""
    r100 = _num(s.return_mean_100, ".1f")
    if target is not None:
        r100 += f"/{target:g}"
    waiting = s.waiting()
    replay = "-" if s.replay_size is None else f"{s.replay_size:,}"
    if waiting is not None:
        replay += f" (waiting {waiting[0]}i/{waiting[1]}s)"
    updates_per_s = None if s.learner is None else s.learner.get("updates_per_s")
    lag = (s.learner or {}).get("policy_lag")
    lag_text = "" if not lag else f" | policy lag {lag['mean']:.1f} (max {lag['max']})"
    return (
        f"[{s.wall_s:6.1f}s] env steps {s.env_steps:,} ({s.actor_steps_per_s:,.0f}/s)"
        f" | updates {s.learner_steps:,} ({_num(updates_per_s, ',.1f')}/s)"
        f" | episodes {s.episodes:,} | return_mean_100 {r100}"
        f" | eval {_num(s.eval_return_mean, '.1f')} | params v{_num(s.param_version, 'd')}"
        f" | replay {replay}{lag_text}"
    )


class PlainDisplay:
    """For logs and CI: the headline every ``every_s`` seconds."""

    def __init__(self, console: Console, *, target: float | None, every_s: float = 5.0) -> None:
        self._console = console
        self._target = target
        self._every_s = every_s
        self._last = float("-inf")

    def start(self) -> None:
        pass

    def update(self, snapshot: Snapshot, rows: list[Row]) -> None:
        now = time.monotonic()
        if now - self._last >= self._every_s:
            self._last = now
            self._console.print(headline(snapshot, self._target), highlight=False, soft_wrap=True)

    def stop(self) -> None:
        pass


class LiveDisplay:
    """A rich Live table, one row per service, redrawn on each poll (about twice a second)."""

    def __init__(self, console: Console, *, name: str, target: float | None) -> None:
        self._console = console
        self._name = name
        self._target = target
        self._live = Live(console=console, refresh_per_second=4, transient=False)

    def start(self) -> None:
        self._live.start()

    def update(self, snapshot: Snapshot, rows: list[Row]) -> None:
        self._live.update(self._render(snapshot, rows))

    def stop(self) -> None:
        self._live.stop()

    def _render(self, s: Snapshot, rows: list[Row]) -> Group:
        table = Table(title=f"rlfleet run [bold]{self._name}[/bold]", expand=False)
        for column, justify in (
            ("service", "left"),
            ("state", "left"),
            ("steps", "right"),
            ("per s", "right"),
            ("episodes", "right"),
            ("params", "right"),
            ("", "left"),
        ):
            table.add_column(column, justify=justify)  # type: ignore[arg-type]
        for row in rows:
            table.add_row(row.name, _state(row.state), *self._cells(row, s))
        return Group(table, Text(headline(s, self._target)))

    @staticmethod
    def _cells(row: Row, s: Snapshot) -> tuple[str, ...]:
        status = row.status
        if status is None:
            return ("", "", "", "", "")
        if row.kind == "replay":
            waiting = s.waiting() or (0, 0)
            inserts = sum(int(t.get("num_inserts", 0)) for t in s.tables or [])
            return (
                f"{inserts:,}",
                "",
                "",
                "",
                f"size {_num(s.replay_size)}, waiting {waiting[0]} inserts / {waiting[1]} samples",
            )
        if row.kind == "learner":
            r100 = _num(status.get("return_mean_100"), ".1f")
            return (
                f"{int(status.get('learner_steps') or 0):,}",
                _num(status.get("updates_per_s"), ",.1f"),
                _num(status.get("episodes")),
                _num(status.get("param_version")),
                f"return_mean_100 {r100}, eval {_num(status.get('eval_return_mean'), '.1f')}",
            )
        return (
            f"{int(status.get('steps') or 0):,}",
            _num(status.get("steps_per_s"), ",.0f"),
            _num(status.get("episodes")),
            _num(status.get("param_version")),
            f"inserted {_num(status.get('inserted_items'))}",
        )


def _state(state: str) -> str:
    if state.startswith("exited"):
        return f"[red]{state}[/red]"
    if state == "not started":
        return "[dim]not started[/dim]"
    colour = "green" if state in ("up", "running", "acting", "in process") else "yellow"
    return f"[{colour}]{state.replace('_', ' ')}[/{colour}]"
