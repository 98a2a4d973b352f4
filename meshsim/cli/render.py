"""The rich terminal rendering of a Report (the JSON rendering lives with the model)."""

from __future__ import annotations

import math

from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from meshsim.cli.timeline_chart import TimelineChart
from meshsim.core.report import AttemptCounts, CallSummary, LatencySummary, Report


def _ms(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.1f}"


def _statuses(calls: CallSummary, between: str = ", ") -> str:
    failures = {name: count for name, count in calls.by_status.items() if name != "OK"}
    return between.join(f"{name} {count}" for name, count in failures.items()) or "-"


def _rate(calls: CallSummary) -> str:
    return "-" if not calls.requests else f"{calls.success_rate:.2%}"


def _table(title: str, *columns: str, numbers: tuple[str, ...] = ()) -> Table:
    """A report table that fits the terminal by wrapping text, never by cutting: numbers keep their
    width (a cut "99.9…" is a lie), text columns wrap and long words fold."""
    table = Table(title=title, title_justify="left", show_edge=False)
    for column in columns:
        if column in numbers:
            table.add_column(column, justify="right", no_wrap=True)
        else:
            table.add_column(column, overflow="fold")
    return table


def _latency_table(title: str, latency: LatencySummary) -> Table:
    names = ("p50", "p90", "p99", "p99.9", "mean", "max")
    table = _table(title, *(name + " ms" for name in names), numbers=tuple(name + " ms" for name in names))
    table.add_row(*(_ms(latency.metric(n)) for n in ("p50", "p90", "p99", "p999", "mean", "max")))
    return table


def _replicas_table(report: Report) -> Table:
    """Attempts each replica received. Retries and hedges get columns only in a run that had some
    (the summary line says when there were none); health changes are the health timeline's."""
    counts = report.counts
    numbers = ("attempts", *(("retries",) if counts.retries else ()), *(("hedges",) if counts.hedges else ()))
    numbers += ("success", "p50 ms", "p99 ms")
    replicas = _table("Replicas", "replica", *numbers, "failures", numbers=numbers)

    def row(name: str, calls: CallSummary, counted: AttemptCounts | None) -> list[str]:
        figures = [str(calls.requests)]
        figures += [str(counted.retries) if counted else ""] if counts.retries else []
        figures += [str(counted.hedges) if counted else ""] if counts.hedges else []
        # Attempts that reached no replica have no success rate or latency of their own.
        measured = [_rate(calls), _ms(calls.latency.p50), _ms(calls.latency.p99)] if counted else ["-"] * 3
        return [name, *figures, *measured, _statuses(calls, "\n")]

    for endpoint in report.endpoints:
        replicas.add_row(*row(endpoint.name, endpoint.calls, endpoint.counts))
    if report.unrouted.requests:
        replicas.add_row(*row("(not sent)", report.unrouted, None))
    return replicas


def render_report(report: Report, wall_seconds: float | None = None) -> RenderableType:
    totals = report.totals
    live = report.mode == "live"
    header = Text.assemble(
        (report.scenario, "bold"),
        ("  LIVE", "bold cyan") if live else "",
        ("  INTERRUPTED", "bold yellow") if report.interrupted else "",
        f"  seed {report.seed}  ·  {report.duration:g} s {'live' if live else 'virtual'}",
        f"  ·  {wall_seconds:.2f} s wall" if wall_seconds is not None else "",
    )
    summary = Text.assemble(
        f"{totals.requests} calls  ·  ",
        (f"{totals.ok} OK", "green"),
        "  ·  ",
        (f"{totals.failed} failed", "red" if totals.failed else "green"),
        f"  ·  success {_rate(totals)}",
    )
    counts = report.counts
    amplification = "-" if math.isnan(counts.amplification) else f"{counts.amplification:.3f}"
    attempts = Text(
        f"{counts.attempts} attempts  ·  {counts.retries} retries  ·  {counts.hedges} hedges  ·  "
        f"amplification {amplification}  ·  {report.budget_exhausted} retries refused"
        + (f"  ·  {report.not_attempted} calls refused before any attempt" if report.not_attempted else "")
    )
    parts: list[RenderableType] = [header, summary]
    if totals.failed:
        parts.append(Text(f"failures: {_statuses(totals)}"))
    parts += [attempts, _latency_table("Latency", totals.latency), TimelineChart(report), _replicas_table(report)]

    if report.faults:
        faults = _table("Faults", "at s", "until s", "action", "target", "detail", numbers=("at s", "until s"))
        for fault in report.faults:
            until = "-" if fault.cleared_at is None else f"{fault.cleared_at:.3f}"
            faults.add_row(f"{fault.applied_at:.3f}", until, fault.action, fault.target, fault.detail)
        parts.append(faults)

    if report.health:
        health = _table("Health timeline", "at s", "client", "replica", "now", "last probe", numbers=("at s",))
        for change in report.health:
            state = Text("healthy", "green") if change.healthy else Text("unhealthy", "red")
            health.add_row(f"{change.at:.3f}", change.client, change.endpoint, state, change.last_probe.value)
        parts.append(health)

    if report.ejections:
        ejections = _table(
            "Outlier ejections",
            "at s",
            "client",
            "replica",
            "detector",
            "for s",
            "back at s",
            numbers=("at s", "for s", "back at s"),
        )
        for j in report.ejections:
            back = "-" if j.returned_at is None else f"{j.returned_at:.3f}"
            ejections.add_row(f"{j.at:.3f}", j.client, j.endpoint, j.detector, f"{j.duration:g}", back)
        parts.append(ejections)

    if report.breakers:
        breakers = _table("Circuit breakers", "at s", "client", "scope", "target", "state", numbers=("at s",))
        for b in report.breakers:
            style = {"OPEN": "red", "HALF_OPEN": "yellow"}.get(b.state, "green")
            breakers.add_row(f"{b.at:.3f}", b.client, b.scope, b.target, Text(b.state, style))
        parts.append(breakers)

    if report.panics:
        panics = _table("Panic mode", "client", "service", "from s", "until s", numbers=("from s", "until s"))
        for p in report.panics:
            panics.add_row(p.client, p.service, f"{p.start:.3f}", "-" if p.end is None else f"{p.end:.3f}")
        parts.append(panics)

    if report.assertions:
        verdicts = _table("Assertions", "", "assertion", "scope", "observed", "expected", numbers=("", "observed"))
        for result in report.assertions:
            mark = Text("PASS", "bold green") if result.passed else Text("FAIL", "bold red")
            observed = "no calls" if math.isnan(result.observed) else f"{result.observed:.6g}"
            window = result.config.window
            scope = result.config.scope_label + (f" {window[0]:g}-{window[1]:g}s" if window else "")
            verdicts.add_row(mark, Text(result.config.name), scope, observed, result.expected)
        parts.append(verdicts)

    return Panel(Group(*parts), title="meshsim report", border_style="green" if report.passed else "red")
