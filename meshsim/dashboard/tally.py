"""A process's request metrics read from its Prometheus registry, cumulative, per caller and service.

Both sides of a call write the same two series (core/metric_names.py): a caller (the
proxy) labels them by `client`, a replica (`meshsim serve`) by `replica`, its address.
A tally keeps, for each (caller, service), the calls that ended, those that did not
end OK and the duration histogram's buckets, summed over methods: the dashboard shows
services and replicas, not methods.

A replica's `grpc.*` services (health probes, reflection) are left out: probes are the
mesh watching the replica, not load on it, and a health Watch lasts as long as its
stream, which would swamp the latency of the calls the replica is there to answer.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

import attrs
import prometheus_client

from meshsim.core.metric_names import (
    ATTEMPT_DURATION_BUCKET,
    ATTEMPTS_TOTAL,
    BUCKET_BOUND,
    CLIENT,
    CODE,
    ENDPOINT,
    REPLICA,
    REQUEST_DURATION_BUCKET,
    REQUESTS_TOTAL,
    SERVICE,
)

OK = "OK"
_PROBE_SERVICES = "grpc."

# (caller, service): the proxy's cluster and its gRPC service, or a replica's address and a gRPC service;
# (caller, service, endpoint): a caller's attempts on one of its replicas.
Key = tuple[str, ...]
# (upper bound in seconds, calls at most that long), ascending, +Inf last: a histogram as Prometheus writes it.
Buckets = tuple[tuple[float, float], ...]


@attrs.frozen
class Counts:
    """Calls that ended, the failed among them, and their duration buckets: since the start, or over a window."""

    calls: float = 0.0
    failed: float = 0.0
    buckets: Buckets = ()

    def __add__(self, other: Counts) -> Counts:
        return Counts(self.calls + other.calls, self.failed + other.failed, _merge(self.buckets, other.buckets, 1))

    def since(self, earlier: Counts) -> Counts:
        """What happened after `earlier`; a counter that went back (a restarted process) counts from zero."""
        if self.calls < earlier.calls:
            return self
        return Counts(
            self.calls - earlier.calls, self.failed - earlier.failed, _merge(self.buckets, earlier.buckets, -1)
        )

    def quantile(self, q: float) -> float | None:
        """Seconds: the `q` quantile of the durations, as Prometheus' histogram_quantile estimates it
        (linear within a bucket; the last finite bound for calls past it); None without calls."""
        return quantile(q, self.buckets)


def quantile(q: float, buckets: Sequence[tuple[float, float]]) -> float | None:
    total = buckets[-1][1] if buckets else 0.0
    if total <= 0:
        return None
    rank = q * total
    lower, below = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if math.isinf(bound):
                return lower
            if count == below:
                return bound
            return lower + (bound - lower) * (rank - below) / (count - below)
        lower, below = bound, count
    return lower


def tally(registry: prometheus_client.CollectorRegistry) -> dict[Key, Counts]:
    """Every (caller, service)'s counts in the registry now."""
    calls: dict[Key, float] = {}
    failed: dict[Key, float] = {}
    buckets: dict[Key, dict[float, float]] = {}
    for family in registry.collect():
        for sample in family.samples:
            if sample.name in _COUNTERS:
                key = _key(sample.name, sample.labels)
                if key is not None:
                    calls[key] = calls.get(key, 0.0) + sample.value
                    if sample.labels.get(CODE) != OK:
                        failed[key] = failed.get(key, 0.0) + sample.value
            elif sample.name in _BUCKETS:
                key = _key(sample.name, sample.labels)
                if key is not None:
                    bound = float(sample.labels[BUCKET_BOUND])
                    counts = buckets.setdefault(key, {})
                    counts[bound] = counts.get(bound, 0.0) + sample.value
    return {
        key: Counts(total, failed.get(key, 0.0), tuple(sorted(buckets.get(key, {}).items())))
        for key, total in calls.items()
    }


def total(counts: Iterable[Counts]) -> Counts:
    summed = Counts()
    for each in counts:
        summed += each
    return summed


_COUNTERS = frozenset({REQUESTS_TOTAL, ATTEMPTS_TOTAL})
_BUCKETS = frozenset({REQUEST_DURATION_BUCKET, ATTEMPT_DURATION_BUCKET})


def _key(name: str, labels: Mapping[str, str]) -> Key | None:
    service = labels.get(SERVICE, "")
    if name in (ATTEMPTS_TOTAL, ATTEMPT_DURATION_BUCKET):
        return labels.get(CLIENT, ""), service, labels.get(ENDPOINT, "")
    if CLIENT in labels:
        return labels[CLIENT], service
    if REPLICA in labels and not service.startswith(_PROBE_SERVICES):
        return labels[REPLICA], service
    return None


def _merge(ours: Buckets, theirs: Buckets, sign: int) -> Buckets:
    if not theirs:
        return ours
    merged = dict(ours)
    for bound, count in theirs:
        merged[bound] = merged.get(bound, 0.0) + sign * count
    return tuple(sorted(merged.items()))
