"""What `meshsim top` shows: two scrapes of a meshsim /metrics endpoint, turned into tables.

The view is a client of the metrics endpoint, not of the proxy's insides, so it works
the same against a proxy (`meshsim live`) and against replicas (`meshsim serve
--metrics`). Rates and latency percentiles are over the time between the two scrapes,
the way Prometheus' rate() and histogram_quantile() read the same series, and a counter
that went back was restarted (a proxy restarted between scrapes) and counts from zero.
Label values are data (an IPv6 endpoint is "[::1]:50051"), so they are escaped, never
read as markup.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable

import attrs
from prometheus_client.parser import text_string_to_metric_families
from rich.console import Group
from rich.markup import escape
from rich.table import Table
from rich.text import Text

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

Labels = tuple[tuple[str, str], ...]
Samples = dict[tuple[str, Labels], float]


@attrs.frozen
class Scrape:
    at: float
    samples: Samples


def parse(text: str, at: float) -> Scrape:
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return Scrape(at, samples)


def health_view(before: Scrape, now: Scrape, trouble: str | None = None) -> Group:
    """The screen: endpoints as of `now`, calls between the two scrapes; `trouble` (why the
    latest scrape failed) heads it while the tables show the last scrapes that worked."""
    tables = (endpoints_table(now), calls_table(before, now))
    if trouble is None:
        return Group(*tables)
    return Group(Text(trouble, style="bold red"), *tables)


def endpoints_table(now: Scrape) -> Table:
    table = Table(title="endpoints", title_justify="left")
    for column in ("caller", "service", "endpoint", "health", "connected"):
        table.add_column(column)
    connected = {labels: value for (name, labels), value in now.samples.items() if name == ACTIVE_CONNECTIONS}
    rows = sorted((labels, value) for (name, labels), value in now.samples.items() if name == ENDPOINT_HEALTH)
    for labels, value in rows:
        named = dict(labels)
        link = connected.get(labels)
        table.add_row(
            escape(named.get(CLIENT) or named.get(REPLICA, "")),
            escape(named.get(SERVICE, "")),
            escape(named.get(ENDPOINT) or named.get(REPLICA, "")),
            "[green]healthy[/]" if value else "[red]unhealthy[/]",
            "" if link is None else ("yes" if link else "[yellow]no[/]"),
        )
    return table


def calls_table(before: Scrape, now: Scrape) -> Table:
    table = Table(title=f"calls over the last {now.at - before.at:.1f} s", title_justify="left")
    numbers = ("calls", "per s", "errors", "p50", "p99", "since start")
    for column in ("caller", "service", "method", *numbers):
        table.add_column(column, justify="right" if column in numbers else "left")
    window = max(now.at - before.at, 1e-9)
    totals: dict[Labels, float] = defaultdict(float)
    errors: dict[Labels, float] = defaultdict(float)
    ever: dict[Labels, float] = defaultdict(float)
    for (name, labels), value in now.samples.items():
        if name != REQUESTS_TOTAL:
            continue
        key = tuple(pair for pair in labels if pair[0] != CODE)
        delta = _increase(before.samples.get((name, labels), 0.0), value)
        totals[key] += delta
        ever[key] += value
        if dict(labels).get(CODE) != "OK":
            errors[key] += delta
    for key in sorted(totals):
        named = dict(key)
        calls = totals[key]
        buckets = _buckets(before, now, key)
        table.add_row(
            escape(named.get(CLIENT) or named.get(REPLICA, "")),
            escape(named.get(SERVICE, "")),
            escape(named.get(METHOD, "")),
            f"{calls:.0f}",
            f"{calls / window:.1f}",
            f"{100 * errors[key] / calls:.1f} %" if calls else "-",
            _milliseconds(quantile(0.5, buckets)),
            _milliseconds(quantile(0.99, buckets)),
            f"{ever[key]:.0f}",
        )
    return table


def _buckets(before: Scrape, now: Scrape, key: Labels) -> list[tuple[float, float]]:
    """The window's cumulative histogram counts for one series: (upper bound, count), ascending."""
    found = []
    for (name, labels), value in now.samples.items():
        if name != REQUEST_DURATION_BUCKET:
            continue
        named = dict(labels)
        bound = named.pop(BUCKET_BOUND)
        if tuple(sorted(named.items())) != key:
            continue
        found.append((float(bound), _increase(before.samples.get((name, labels), 0.0), value)))
    return sorted(found)


def _increase(before: float, now: float) -> float:
    """How much a counter grew between two scrapes; less than before means it began again from zero."""
    return now if now < before else now - before


def quantile(q: float, buckets: Iterable[tuple[float, float]]) -> float | None:
    """histogram_quantile: linear within the bucket the rank falls in; None without observations."""
    ordered = list(buckets)
    if not ordered or ordered[-1][1] <= 0:
        return None
    rank = q * ordered[-1][1]
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in ordered:
        if count >= rank:
            if math.isinf(bound):
                return lower_bound  # beyond the last finite bucket: its bound is all one can say
            share = (rank - lower_count) / (count - lower_count) if count > lower_count else 1.0
            return lower_bound + (bound - lower_bound) * share
        lower_bound, lower_count = bound, count
    return ordered[-1][0]


def _milliseconds(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.1f} ms"
