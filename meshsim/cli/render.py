"""The rich terminal rendering of a Report (the JSON rendering lives with the model)."""

from __future__ import annotations

import math

from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from meshsim.core.report import CallSummary, LatencySummary, Report


def _ms(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.1f}"


def _statuses(calls: CallSummary) -> str:
    failures = {name: count for name, count in calls.by_status.items() if name != "OK"}
    return ", ".join(f"{name} {count}" for name, count in failures.items()) or "-"


def _rate(calls: CallSummary) -> str:
    return "-" if not calls.requests else f"{calls.success_rate:.2%}"


def _latency_table(title: str, latency: LatencySummary) -> Table:
    table = Table(title=title, title_justify="left", show_edge=False)
    for column in ("p50", "p90", "p99", "p99.9", "mean", "max"):
        table.add_column(column + " ms", justify="right")
    table.add_row(*(_ms(latency.metric(n)) for n in ("p50", "p90", "p99", "p999", "mean", "max")))
    return table


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
        f"  ·  failures: {_statuses(totals)}",
    )
    counts = report.counts
    amplification = "-" if math.isnan(counts.amplification) else f"{counts.amplification:.3f}"
    attempts = Text(
        f"{counts.attempts} attempts  ·  {counts.retries} retries  ·  {counts.hedges} hedges  ·  "
        f"amplification {amplification}  ·  {report.budget_exhausted} retries refused"
        + (f"  ·  {report.not_attempted} calls refused before any attempt" if report.not_attempted else "")
    )
    parts: list[RenderableType] = [header, summary, attempts, _latency_table("Latency", totals.latency)]

    replicas = Table(title="Replicas", title_justify="left", show_edge=False)
    for column, justify in (
        ("replica", "left"),
        ("attempts", "right"),
        ("retries", "right"),
        ("hedges", "right"),
        ("success", "right"),
        ("p50 ms", "right"),
        ("p99 ms", "right"),
        ("failures", "left"),
        ("health changes", "right"),
    ):
        replicas.add_column(column, justify=justify)  # type: ignore[arg-type]
    for endpoint in report.endpoints:
        calls = endpoint.calls
        replicas.add_row(
            endpoint.name,
            str(calls.requests),
            str(endpoint.counts.retries),
            str(endpoint.counts.hedges),
            _rate(calls),
            _ms(calls.latency.p50),
            _ms(calls.latency.p99),
            _statuses(calls),
            str(len(endpoint.health)),
        )
    if report.unrouted.requests:
        unrouted = report.unrouted
        replicas.add_row("(not sent)", str(unrouted.requests), "", "", "-", "-", "-", _statuses(unrouted), "")
    parts.append(replicas)

    if report.faults:
        faults = Table(title="Faults", title_justify="left", show_edge=False)
        for column in ("at s", "until s", "action", "target", "detail"):
            faults.add_column(column)
        for fault in report.faults:
            until = "-" if fault.cleared_at is None else f"{fault.cleared_at:.3f}"
            faults.add_row(f"{fault.applied_at:.3f}", until, fault.action, fault.target, fault.detail)
        parts.append(faults)

    if report.health:
        health = Table(title="Health timeline", title_justify="left", show_edge=False)
        for column in ("at s", "client", "replica", "now", "last probe"):
            health.add_column(column)
        for change in report.health:
            state = Text("healthy", "green") if change.healthy else Text("unhealthy", "red")
            health.add_row(f"{change.at:.3f}", change.client, change.endpoint, state, change.last_probe.value)
        parts.append(health)

    if report.ejections:
        ejections = Table(title="Outlier ejections", title_justify="left", show_edge=False)
        for column in ("at s", "client", "replica", "detector", "for s", "back at s"):
            ejections.add_column(column)
        for j in report.ejections:
            back = "-" if j.returned_at is None else f"{j.returned_at:.3f}"
            ejections.add_row(f"{j.at:.3f}", j.client, j.endpoint, j.detector, f"{j.duration:g}", back)
        parts.append(ejections)

    if report.breakers:
        breakers = Table(title="Circuit breakers", title_justify="left", show_edge=False)
        for column in ("at s", "client", "scope", "target", "state"):
            breakers.add_column(column)
        for b in report.breakers:
            style = {"OPEN": "red", "HALF_OPEN": "yellow"}.get(b.state, "green")
            breakers.add_row(f"{b.at:.3f}", b.client, b.scope, b.target, Text(b.state, style))
        parts.append(breakers)

    if report.panics:
        panics = Table(title="Panic mode", title_justify="left", show_edge=False)
        for column in ("client", "service", "from s", "until s"):
            panics.add_column(column)
        for p in report.panics:
            panics.add_row(p.client, p.service, f"{p.start:.3f}", "-" if p.end is None else f"{p.end:.3f}")
        parts.append(panics)

    if report.assertions:
        verdicts = Table(title="Assertions", title_justify="left", show_edge=False)
        for column in ("", "assertion", "scope", "observed", "expected"):
            verdicts.add_column(column)
        for result in report.assertions:
            mark = Text("PASS", "bold green") if result.passed else Text("FAIL", "bold red")
            observed = "no calls" if math.isnan(result.observed) else f"{result.observed:.6g}"
            window = result.config.window
            scope = result.config.scope_label + (f" {window[0]:g}-{window[1]:g}s" if window else "")
            verdicts.add_row(mark, Text(result.config.name), scope, observed, result.expected)
        parts.append(verdicts)

    return Panel(Group(*parts), title="meshsim report", border_style="green" if report.passed else "red")
