"""`meshsim compare A.json B.json`: two reports of one scenario, side by side."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import click
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from meshsim.cli.app import Application

if TYPE_CHECKING:
    from meshsim.core.compare import Comparison, Figure, Side


@click.command()
@click.argument("first", metavar="A.json", type=click.Path(dir_okay=False))
@click.argument("second", metavar="B.json", type=click.Path(dir_okay=False))
@click.option(
    "--tolerance",
    "tolerances",
    multiple=True,
    metavar="FIGURE=AMOUNT",
    help="Judge a figure: p50, p99, p999 (relative, e.g. p99=0.5) or success_rate (absolute). Default: p50=0.2.",
)
@click.option(
    "--latency-slack",
    "latency_slack_ms",
    type=click.FloatRange(min=0),
    default=None,
    metavar="MS",
    help="Latency figures this many milliseconds apart are within tolerance whatever the share. Default: 5.",
)
@click.pass_obj
def compare(
    app: Application, first: str, second: str, tolerances: tuple[str, ...], latency_slack_ms: float | None
) -> None:
    """Compare two JSON reports (sim and live, two seeds, two policies); exit 1 when a verdict
    differs or a judged figure is outside its tolerance."""
    from meshsim.core.compare import DEFAULT_TOLERANCES, FIGURES, LATENCY_SLACK_MS, compare, load_report

    judged = dict(DEFAULT_TOLERANCES)
    for text in tolerances:
        name, _, amount = text.partition("=")
        if name not in FIGURES:
            raise click.BadParameter(f"expected one of {', '.join(FIGURES)}, got {name!r}", param_hint="--tolerance")
        try:
            judged[name] = float(amount.rstrip("%")) / (100 if amount.endswith("%") else 1)
        except ValueError:
            raise click.BadParameter(
                f'expected "{name}=0.2" or "{name}=20%", got {text!r}', param_hint="--tolerance"
            ) from None
    slack = LATENCY_SLACK_MS if latency_slack_ms is None else latency_slack_ms
    comparison = compare(load_report(first), load_report(second), judged, (first, second), slack)
    app.display(render(comparison))
    if comparison.differences:
        raise SystemExit(1)


def render(comparison: Comparison) -> RenderableType:
    a, b = comparison.a, comparison.b

    def side(s: Side) -> str:
        return f"{s.label} {s.mode} seed {s.seed}" + (", interrupted" if s.interrupted else "")

    header = Text.assemble(("compare ", "bold"), (a.scenario, "bold"), f"  {side(a)}  vs  {side(b)}")
    if a.scenario != b.scenario:
        header.append(f"  (B is {b.scenario})", style="yellow")
    verdicts = Table(title="Assertions", title_justify="left", show_edge=False)
    verdicts.add_column("assertion", overflow="fold", max_width=50)
    verdicts.add_column("A", justify="center")
    verdicts.add_column("B", justify="center")
    for verdict in comparison.verdicts:
        style = "" if verdict.same else "bold red"
        verdicts.add_row(verdict.name, _verdict(verdict.a), _verdict(verdict.b), style=style)
    figures = Table(title="Figures", title_justify="left", show_edge=False)
    for column in ("figure", "A", "B", "B vs A", "judged"):
        figures.add_column(column, justify="left" if column == "figure" else "right")
    for figure in comparison.figures:
        figures.add_row(
            figure.label,
            _value(figure, figure.a),
            _value(figure, figure.b),
            _difference(figure),
            _judged(figure),
            style="bold red" if figure.within is False else "",
        )
    replicas = Table(title="Replicas: share of calls, and out / in", title_justify="left", show_edge=False)
    for column in ("replica", "A", "B", "A out/in s", "B out/in s"):
        replicas.add_column(column, justify="left" if column == "replica" else "right", overflow="fold")
    for row in comparison.replicas:
        replicas.add_row(
            row.name, f"{row.share_a:.1%}", f"{row.share_b:.1%}", _changes(row.changes_a), _changes(row.changes_b)
        )
    differences = comparison.differences
    outcome = (
        Text("the same", style="bold green")
        if not differences
        else Text("differ: " + "; ".join(differences), style="bold red")
    )
    return Group(header, verdicts, figures, replicas, outcome)


def _verdict(passed: bool | None) -> Text:
    if passed is None:
        return Text("-")
    return Text("PASS", style="green") if passed else Text("FAIL", style="red")


def _value(figure: Figure, value: float) -> str:
    if math.isnan(value):
        return "-"
    return f"{value:.2%}" if figure.name == "success_rate" else f"{value:.1f}"


def _difference(figure: Figure) -> str:
    difference = figure.difference
    if math.isnan(difference) or math.isinf(difference):
        return "-"
    return f"{difference:+.0%}" if figure.relative else f"{difference * 100:+.2f}pp"


def _judged(figure: Figure) -> str:
    within = figure.within
    if within is None:
        return ""
    tolerance = figure.tolerance
    assert tolerance is not None
    limit = f"±{tolerance:.0%}" if figure.relative else f"±{tolerance * 100:g}pp"
    if figure.slack:
        limit += f"/{figure.slack:g}ms"
    return f"{limit} {'ok' if within else 'off'}"


def _changes(changes: tuple[tuple[float, bool], ...]) -> str:
    return " ".join(f"{'in' if healthy else 'out'} {at:.1f}" for at, healthy in changes[:4]) or "-"
