"""Measurements over a recorded run: percentiles, call summaries, and the queries that feed them.

`RecordedRun` is the query engine over `RunRecorder`'s arrays: it indexes every call
and attempt by client, service and replica once, then answers "which calls (or
attempts) of this scope, started in this window" as lists of indices, and summarises
them (counts by status, latency percentiles, key affinity, retries and hedges).
"""

from __future__ import annotations

import collections
import math
import operator
from array import array
from collections.abc import Iterable, Sequence
from typing import Any

from meshsim.core.events import AttemptKind
from meshsim.core.recording import RunRecorder
from meshsim.core.report import AttemptCounts, CallSummary, LatencySummary
from meshsim.core.status import StatusCode

# A code's name without an enum lookup per summary (a report of 10,000 replicas makes 10,000 of them).
_STATUS_NAMES = {int(code): code.name for code in StatusCode}


def percentile(ordered: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile of an ascending sequence (an observed value, never interpolated)."""
    if not ordered:
        return math.nan
    rank = max(1, math.ceil(pct / 100.0 * len(ordered)))
    return ordered[rank - 1]


def latency_summary(seconds: Iterable[float]) -> LatencySummary:
    """Percentiles, mean and maximum of durations in seconds, in milliseconds; NaN for none."""
    ordered = sorted(seconds)
    if not ordered:
        nan = math.nan
        return LatencySummary(nan, nan, nan, nan, nan, nan)
    return LatencySummary(
        p50=percentile(ordered, 50) * 1e3,
        p90=percentile(ordered, 90) * 1e3,
        p99=percentile(ordered, 99) * 1e3,
        p999=percentile(ordered, 99.9) * 1e3,
        mean=math.fsum(ordered) / len(ordered) * 1e3,
        max=ordered[-1] * 1e3,
    )


def _summary(
    started: array[float],
    finished: array[float],
    status: array[int],
    indices: Iterable[int],
    keys: array[int] | None = None,
    endpoints: array[int] | None = None,
) -> CallSummary:
    # Column operations (map, Counter) loop in C: a report passes over every call several times.
    started, finished, status = _take(started, indices), _take(finished, indices), _take(status, indices)
    counts = collections.Counter(status)
    latencies = array("d", map(operator.sub, finished, started))  # 8 bytes a call; a list takes 32
    placements: dict[int, dict[int, int]] = {}
    if keys is not None and endpoints is not None:
        chosen = _take(keys, indices)
        if chosen and max(chosen) >= 0:
            for key, endpoint in zip(chosen, _take(endpoints, indices), strict=True):
                if key >= 0:
                    per_endpoint = placements.setdefault(key, {})
                    per_endpoint[endpoint] = per_endpoint.get(endpoint, 0) + 1
    by_status = {_STATUS_NAMES[code]: counts[code] for code in sorted(counts)}
    affinity = math.nan
    if placements:
        keyed = sum(sum(p.values()) for p in placements.values())
        affinity = sum(max(p.values()) for p in placements.values()) / keyed
    return CallSummary(len(latencies), by_status, latency_summary(latencies), affinity)


def _take(column: array[Any], indices: Iterable[int]) -> array[Any]:
    """The column's values at `indices`, as an array of its type (the column itself for all of it)."""
    if isinstance(indices, range) and indices.step == 1 and indices.start == 0 and indices.stop == len(column):
        return column
    return array(column.typecode, map(column.__getitem__, indices))


class RecordedRun:
    """Index sets over the recorder's arrays by scope and window, and the summaries of them."""

    def __init__(self, recorder: RunRecorder) -> None:
        self.r = recorder
        r = recorder
        # Index every call and attempt by client, service and replica once, not once per question.
        self._calls = {
            "service": (_group(r.service), r.services),
            "client": (_group(r.client), r.clients),
            "replica": (_group(r.endpoint), r.endpoints),
        }
        self._attempts = {
            "service": (_group(r.a_service), r.services),
            "client": (_group(r.a_client), r.clients),
            "replica": (_group(r.a_endpoint), r.endpoints),
        }

    def calls_summary(self, indices: Iterable[int]) -> CallSummary:
        r = self.r
        return _summary(r.started, r.finished, r.status, indices, r.key, r.endpoint)

    def attempts_summary(self, indices: Iterable[int]) -> CallSummary:
        r = self.r
        return _summary(r.a_started, r.a_finished, r.a_status, indices)

    def counts(self, attempts: Sequence[int], calls: int) -> AttemptCounts:
        kinds = collections.Counter(_take(self.r.a_kind, attempts))
        retries = kinds[AttemptKind.RETRY]
        hedges = kinds[AttemptKind.HEDGE]
        return AttemptCounts(len(attempts), retries, hedges, len(attempts) / calls if calls else math.nan)

    def replica_counts(self, attempts: Sequence[int]) -> AttemptCounts:
        """Per replica, amplification is the attempts it received per first attempt it received."""
        firsts = collections.Counter(_take(self.r.a_kind, attempts))[AttemptKind.FIRST]
        return self.counts(attempts, firsts)

    @staticmethod
    def _select(
        index: dict[str, tuple[dict[int, array[int]], Any]], size: int, scope: str, name: str | None
    ) -> Sequence[int]:
        if scope == "run":
            return range(size)
        groups, names = index[scope]
        wanted = names.find(name)
        return _NONE if wanted is None else groups.get(wanted, _NONE)

    def calls(self, scope: str, name: str | None, window: tuple[float, float] | None = None) -> Sequence[int]:
        started = self.r.started
        return _within(self._select(self._calls, len(started), scope, name), started, window)

    def attempts(self, scope: str, name: str | None, window: tuple[float, float] | None = None) -> Sequence[int]:
        started = self.r.a_started
        return _within(self._select(self._attempts, len(started), scope, name), started, window)

    def unrouted(self) -> Sequence[int]:
        return self._attempts["replica"][0].get(-1, _NONE)


# Index sets are arrays of machine integers (8 bytes an index; a list of ints takes 36): a
# report of a million calls holds several of them at once.
_NONE: array[int] = array("q")


def _group(column: array[int]) -> dict[int, array[int]]:
    groups: dict[int, array[int]] = {}
    for i, value in enumerate(column):
        found = groups.get(value)
        if found is None:
            groups[value] = array("q", (i,))
        else:
            found.append(i)
    return groups


def _within(indices: Sequence[int], started: array[float], window: tuple[float, float] | None) -> Sequence[int]:
    if window is None:
        return indices
    low, high = window
    return array("q", [i for i in indices if low <= started[i] < high])
