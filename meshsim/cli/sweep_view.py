"""What `meshsim sweep` shows: a progress bar while it runs, then each combination's verdict, its
failing seeds with the command that reproduces each, and how the key figures spread across
seeds, in a table that fits 80 columns."""

from __future__ import annotations

import math

from rich.console import Console, Group, RenderableType
from rich.markup import escape
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from meshsim.core.sweep import FIGURES, SPREAD_COLUMNS, CombinationResult, RunFigures, SweepResult, reproduce

SHOWN_FAILURES = 5
"""Failing seeds listed per combination; --json lists them all."""
_WIDTH = 78


class SweepProgress:
    """Runs done out of the runs needed, and how many failed so far."""

    def __init__(self, console: Console, total: int) -> None:
        self._bar = Progress(
            TextColumn("sweeping"),
            BarColumn(bar_width=24),
            TextColumn("{task.completed}/{task.total} runs, {task.fields[failed]} failed"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console,
            transient=True,
        )
        self._failed = 0
        self._task: TaskID = self._bar.add_task("sweep", total=total, failed=0)
        self._bar.start()

    def __call__(self, run: RunFigures, received: int, needed: int) -> None:
        self._failed += not run.passed
        self._bar.update(self._task, completed=min(received, needed), total=needed, failed=self._failed)

    def close(self) -> None:
        self._bar.stop()


def render(result: SweepResult, seconds: float, engine: str) -> RenderableType:
    combinations = len(result.combinations)
    planned = len(result.seeds) * combinations
    shape = f"{len(result.seeds):,} seeds" + (f" x {combinations:,} combinations" if combinations > 1 else "")
    parts: list[RenderableType] = [
        Text(f"{result.name}: {shape}, {result.runs:,} runs", style="bold"),
        Text(f"{seconds:.1f} s on {engine}"),
    ]
    for combination in result.combinations:
        parts.append(Text(""))
        parts.extend(_combination(result, combination))
    parts.append(Text(""))
    if result.stopped_early:
        first = next(run for c in result.combinations for run in c.failures)
        parts.append(Text(f"stopped at the first failing run (seed {first.seed}); {planned - result.runs:,} not run"))
    if result.failed:
        parts.append(Text.from_markup(f"[bold red]FAILED[/]: {result.failed:,} of {result.runs:,} runs failed"))
    else:
        parts.append(Text.from_markup(f"[bold green]PASSED[/]: all {result.runs:,} runs"))
    return Group(*parts)


def _combination(result: SweepResult, combination: CombinationResult) -> list[RenderableType]:
    runs = len(combination.runs)
    failures = combination.failures
    label = combination.combination.label if combination.combination.assignments else "the file as written"
    verdict = "[red]" if failures else "[green]"
    header = Text.from_markup(f"[bold]{escape(label)}[/]: {verdict}{runs - len(failures):,} passed, ")
    header.append_text(Text.from_markup(f"{verdict}{len(failures):,} failed"))
    if not runs:
        return [Text.from_markup(f"[bold]{escape(label)}[/]: not run")]
    shown: list[RenderableType] = [header, _spread_table(combination)]
    for run in failures[:SHOWN_FAILURES]:
        names = ", ".join(run.failed)
        line = f"  seed {run.seed}: {names}"
        shown.append(Text(line if len(line) <= _WIDTH else line[: _WIDTH - 1] + "…"))
        # Never wrapped or cut: people copy this line.
        command = reproduce(result.path, run.seed, combination.combination)
        shown.append(Text(f"    {command}", no_wrap=True, overflow="ignore"))
    if len(failures) > SHOWN_FAILURES:
        shown.append(Text(f"  and {len(failures) - SHOWN_FAILURES:,} more failing seeds (--json lists them all)"))
    return shown


def _spread_table(combination: CombinationResult) -> Table:
    table = Table(box=None, padding=(0, 1), pad_edge=False, show_edge=False, header_style="bold")
    table.add_column("  across seeds", no_wrap=True, min_width=15)
    for name in SPREAD_COLUMNS:
        table.add_column(name, justify="right", no_wrap=True, min_width=9)
    for figure, title in FIGURES:
        spread = combination.spread(figure)
        table.add_row(f"  {title}", *(_number(figure, value) for value in spread.values()))
    return table


def _number(figure: str, value: float) -> str:
    if math.isnan(value):
        return "-"
    if figure == "success_rate":
        return f"{value:.2%}"
    return f"{value:,.1f}"
