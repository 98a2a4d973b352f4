"""A scrape of a Prometheus text endpoint, and the arithmetic Prometheus itself does on two of them.

Rates and latency percentiles are over the time between two scrapes, the way Prometheus'
rate() and histogram_quantile() read the same series, and a counter that went back was
restarted (a proxy restarted between scrapes) and counts from zero.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import attrs
from prometheus_client.parser import text_string_to_metric_families

Labels = tuple[tuple[str, str], ...]
Samples = dict[tuple[str, Labels], float]


@attrs.frozen
class Scrape:
    """Every sample of one scrape, by name and sorted labels, taken at monotonic time `at`."""

    at: float
    samples: Samples


def parse(text: str, at: float) -> Scrape:
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return Scrape(at, samples)


def increase(before: float, now: float) -> float:
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
