"""What `meshsim top` reads from two scrapes of a meshsim /metrics endpoint: its endpoints' health
and, per method, the calls between the scrapes; as tables that fit 80 columns.

The view is a client of the metrics endpoint, not of the proxy's insides, so it works the
same against a proxy (`meshsim live`), a program using GrpcClient, and replicas (`meshsim
serve --admin`): a caller's series carry `client`, a replica's `replica`. A label every row
shares is said once, in the title, rather than in a column of one repeated value; gRPC
names are shortened (`cli/grpc_names.py`). Label values are data (an IPv6 endpoint is
"[::1]:50051"), so they are escaped, never read as markup.
"""

from __future__ import annotations

from collections import defaultdict

import attrs
from rich import box
from rich.markup import escape
from rich.table import Table

from meshsim.cli.grpc_names import short_methods, short_services
from meshsim.cli.prometheus import Labels, Scrape, increase, quantile
from meshsim.cli.top_history import Histogram, Window
from meshsim.core.metric_names import (
    ACTIVE_CONNECTIONS,
    BUCKET_BOUND,
    CLIENT,
    CODE,
    ENDPOINT,
    ENDPOINT_HEALTH,
    METHOD,
    REPLICA,
    REQUEST_DURATION_BUCKET,
    REQUESTS_TOTAL,
    SERVICE,
)


@attrs.frozen
class Series:
    """One caller's calls of one method: in the window between two scrapes, and since it started."""

    caller: str
    role: str  # which label named the caller: "client" (a proxy, a GrpcClient) or "replica"
    service: str
    method: str
    calls: float
    errors: float
    total: float
    histogram: Histogram


def calls(before: Scrape, now: Scrape) -> list[Series]:
    """Every series of calls `now` shows, sorted by caller and method; `before` is the scrape the
    window starts at (`now` itself when there is only one, and the window is empty)."""
    window: dict[Labels, float] = defaultdict(float)
    errors: dict[Labels, float] = defaultdict(float)
    ever: dict[Labels, float] = defaultdict(float)
    for (name, labels), value in now.samples.items():
        if name != REQUESTS_TOTAL:
            continue
        key = tuple(pair for pair in labels if pair[0] != CODE)
        grown = increase(before.samples.get((name, labels), 0.0), value)
        window[key] += grown
        ever[key] += value
        if dict(labels).get(CODE) != "OK":
            errors[key] += grown
    found = []
    for key, made in window.items():
        named = dict(key)
        found.append(
            Series(
                caller=named.get(CLIENT) or named.get(REPLICA, ""),
                role=CLIENT if CLIENT in named else REPLICA,
                service=named.get(SERVICE, ""),
                method=named.get(METHOD, ""),
                calls=made,
                errors=errors[key],
                total=ever[key],
                histogram=_histogram(before, now, key),
            )
        )
    return sorted(found, key=lambda s: (s.caller, s.method))


def window(before: Scrape, now: Scrape) -> Window:
    """All the calls between two scrapes, every series summed: what a sparkline column shows."""
    shown = calls(before, now)
    bounds: dict[float, float] = defaultdict(float)
    for one in shown:
        for bound, count in one.histogram:
            bounds[bound] += count
    return Window(
        start=before.at,
        end=now.at,
        calls=sum(s.calls for s in shown),
        errors=sum(s.errors for s in shown),
        histogram=tuple(sorted(bounds.items())),
    )


def _histogram(before: Scrape, now: Scrape, key: Labels) -> Histogram:
    """The window's cumulative histogram counts for one series: (upper bound, count), ascending."""
    found = []
    for (name, labels), value in now.samples.items():
        if name != REQUEST_DURATION_BUCKET:
            continue
        named = dict(labels)
        bound = named.pop(BUCKET_BOUND)
        if tuple(sorted(named.items())) != key:
            continue
        found.append((float(bound), increase(before.samples.get((name, labels), 0.0), value)))
    return tuple(sorted(found))


def endpoints_table(now: Scrape) -> Table | None:
    """Each endpoint's health as its caller sees it (a replica's: as it reports it); None if none."""
    connected = {labels: value for (name, labels), value in now.samples.items() if name == ACTIVE_CONNECTIONS}
    rows = []
    for (name, labels), value in now.samples.items():
        if name == ENDPOINT_HEALTH:
            named = dict(labels)
            replica = named.get(REPLICA)
            caller = replica or named.get(CLIENT, "")
            rows.append((caller, named.get(SERVICE, ""), named.get(ENDPOINT) or replica or "", value, labels))
    if not rows:
        return None
    rows.sort(key=lambda row: row[:3])
    replicas = all(caller == endpoint for caller, _, endpoint, _, _ in rows)
    callers = sorted({row[0] for row in rows})
    services = short_services(row[1] for row in rows)
    show_caller = not replicas and len(callers) > 1
    show_service = len(services) > 1
    show_connected = any(row[4] in connected for row in rows)
    title = "replicas" if replicas else "endpoints"
    if not show_service:
        title = f"{services[rows[0][1]]} {title}"
    if not replicas and not show_caller:
        title += f", as {callers[0]} sees them"
    table = _table(title)
    if show_caller:
        table.add_column("caller")
    if show_service:
        table.add_column("service")
    table.add_column("replica" if replicas else "endpoint")
    table.add_column("health")
    if show_connected:
        table.add_column("connected")
    for caller, service, endpoint, value, labels in rows:
        link = connected.get(labels)
        cells = [escape(caller)] if show_caller else []
        cells += [escape(services[service])] if show_service else []
        cells += [escape(endpoint), "[green]healthy[/]" if value else "[red]unhealthy[/]"]
        if show_connected:
            cells.append("" if link is None else ("yes" if link else "[yellow]no[/]"))
        table.add_row(*cells)
    return table


def calls_table(before: Scrape, now: Scrape) -> Table | None:
    """Per method: calls a second, the share that failed and p50/p99 over the window, and the
    calls since the caller started. Several callers (replicas) each get a heading row; None
    if no calls were ever made."""
    shown = calls(before, now)
    if not shown:
        return None
    seconds = now.at - before.at
    callers = list(dict.fromkeys((s.role, s.caller) for s in shown))
    methods = short_methods(s.method for s in shown)
    title = "calls"
    if len(callers) == 1 and callers[0][1]:
        title += f" by {callers[0][1]}"
    title += f" over the last {seconds:.1f} s" if seconds > 0 else " so far (rates from the next scrape)"
    table = _table(title)
    numbers = ("calls/s", "errors", "p50 ms", "p99 ms", "total")
    table.add_column("method", overflow="fold")
    for column in numbers:
        table.add_column(column, justify="right", no_wrap=True)
    for role, caller in callers:
        if len(callers) > 1:
            table.add_row(f"[bold]{role} {escape(caller)}[/]")
        for one in sorted((s for s in shown if s.caller == caller), key=lambda s: methods[s.method]):
            measured = seconds > 0 and one.calls > 0
            table.add_row(
                escape(methods[one.method]),
                f"{one.calls / seconds:.1f}" if seconds > 0 else "-",
                f"{100 * one.errors / one.calls:.1f}%" if measured else "-",
                _milliseconds(quantile(0.5, one.histogram)) if measured else "-",
                _milliseconds(quantile(0.99, one.histogram)) if measured else "-",
                f"{one.total:.0f}",
            )
    return table


def _table(title: str) -> Table:
    # No lines between columns: on a screen of 80 the names need the room more than the rules do.
    return Table(
        title=escape(title),
        title_justify="left",
        box=box.SIMPLE_HEAD,
        show_edge=False,
        collapse_padding=True,
        min_width=len(title),
    )


def _milliseconds(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.1f}"
