"""The report model: one computation from the recorder, rendered as JSON here and as rich text by the CLI."""

from __future__ import annotations

import json
import math
import operator
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import attrs

from meshsim.core.recording import FaultRecord, HealthTransition, RunRecorder
from meshsim.core.scenario import AssertionConfig, Scenario
from meshsim.core.status import StatusCode

REPORT_SCHEMA = "meshsim/report/v1"

_OPERATORS: dict[str, Callable[[float, float], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "==": operator.eq,
    "!=": operator.ne,
}


def percentile(ordered: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile of an ascending sequence (an observed value, never interpolated)."""
    if not ordered:
        return math.nan
    rank = max(1, math.ceil(pct / 100.0 * len(ordered)))
    return ordered[rank - 1]


@attrs.frozen
class LatencySummary:
    """Milliseconds; NaN when there were no calls."""

    p50: float
    p90: float
    p99: float
    p999: float
    mean: float
    max: float

    @classmethod
    def of(cls, seconds: Iterable[float]) -> LatencySummary:
        ordered = sorted(seconds)
        if not ordered:
            nan = math.nan
            return cls(nan, nan, nan, nan, nan, nan)
        return cls(
            p50=percentile(ordered, 50) * 1e3,
            p90=percentile(ordered, 90) * 1e3,
            p99=percentile(ordered, 99) * 1e3,
            p999=percentile(ordered, 99.9) * 1e3,
            mean=math.fsum(ordered) / len(ordered) * 1e3,
            max=ordered[-1] * 1e3,
        )

    def metric(self, name: str) -> float:
        return float(getattr(self, name))


@attrs.frozen
class CallSummary:
    """Counts by status and latency of a set of calls.

    `key_affinity` is the share of keyed calls that went to the replica their key
    went to most often (1.0: every key sticks to one replica; about 1/N under round
    robin over N replicas); NaN when no call carried a key.
    """

    requests: int
    by_status: dict[str, int]
    latency: LatencySummary
    key_affinity: float = math.nan

    @property
    def ok(self) -> int:
        return self.by_status.get("OK", 0)

    @property
    def failed(self) -> int:
        return self.requests - self.ok

    @property
    def success_rate(self) -> float:
        return self.ok / self.requests if self.requests else math.nan


@attrs.frozen
class EndpointReport:
    name: str
    service: str
    calls: CallSummary
    health: tuple[HealthTransition, ...]


@attrs.frozen
class Bucket:
    start: float
    calls: CallSummary


@attrs.frozen
class AssertionResult:
    config: AssertionConfig
    observed: float
    passed: bool

    @property
    def expected(self) -> str:
        return f"{self.config.op} {self.config.value:g}"


@attrs.frozen
class Report:
    scenario: str
    path: str
    seed: int
    duration: float
    totals: CallSummary
    unrouted: CallSummary
    endpoints: tuple[EndpointReport, ...]
    clients: tuple[tuple[str, CallSummary], ...]
    faults: tuple[FaultRecord, ...]
    health: tuple[HealthTransition, ...]
    assertions: tuple[AssertionResult, ...]
    timeline: tuple[Bucket, ...]
    bucket_width: float

    @property
    def passed(self) -> bool:
        return all(a.passed for a in self.assertions)

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": REPORT_SCHEMA,
            "scenario": self.scenario,
            "path": self.path,
            "seed": self.seed,
            "duration_s": self.duration,
            "passed": self.passed,
            "totals": {**_totals(self.totals), "key_affinity": _ratio(self.totals.key_affinity)},
            "latency_ms": _latency(self.totals.latency),
            "unrouted": _counts(self.unrouted),
            "endpoints": [
                {
                    "name": e.name,
                    "service": e.service,
                    **_counts(e.calls),
                    "latency_ms": _latency(e.calls.latency),
                    "health_transitions": [_transition(t) for t in e.health],
                }
                for e in self.endpoints
            ],
            "clients": [
                {"name": name, **_counts(calls), "latency_ms": _latency(calls.latency)} for name, calls in self.clients
            ],
            "faults": [
                {
                    "index": f.index,
                    "action": f.action,
                    "target": f.target,
                    "detail": f.detail,
                    "applied_at_s": _round(f.applied_at),
                    "cleared_at_s": None if f.cleared_at is None else _round(f.cleared_at),
                }
                for f in self.faults
            ],
            "assertions": [
                {
                    "name": a.config.name,
                    "metric": a.config.metric,
                    "scope": a.config.scope_label,
                    "window_s": None if a.config.window is None else list(a.config.window),
                    "passed": a.passed,
                    "observed": _ratio(a.observed) if a.config.metric in _RATIOS else _number(a.observed),
                    "expected": a.expected,
                }
                for a in self.assertions
            ],
            "timeline": {
                "bucket_s": self.bucket_width,
                "buckets": [
                    {
                        "start_s": _round(b.start),
                        **_totals(b.calls),
                        "p50_ms": _number(b.calls.latency.p50),
                        "p99_ms": _number(b.calls.latency.p99),
                    }
                    for b in self.timeline
                ],
            },
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, allow_nan=False) + "\n"


_RATIOS = ("success_rate", "key_affinity")


def _round(value: float) -> float:
    return round(value, 6)


def _ratio(value: float) -> float | None:
    return None if math.isnan(value) else round(value, 6)


def _number(value: float) -> float | None:
    return None if math.isnan(value) else round(value, 3)


def _latency(latency: LatencySummary) -> dict[str, float | None]:
    return {name: _number(getattr(latency, name)) for name in ("p50", "p90", "p99", "p999", "mean", "max")}


def _counts(calls: CallSummary) -> dict[str, Any]:
    return {"requests": calls.requests, "by_status": dict(calls.by_status)}


def _totals(calls: CallSummary) -> dict[str, Any]:
    return {"requests": calls.requests, "ok": calls.ok, "failed": calls.failed, "by_status": dict(calls.by_status)}


def _transition(t: HealthTransition) -> dict[str, Any]:
    return {
        "at_s": _round(t.at),
        "client": t.client,
        "healthy": t.healthy,
        "last_probe": t.last_probe.value,
    }


class _Calls:
    """Index sets over the recorder's arrays, and the summaries of them."""

    def __init__(self, recorder: RunRecorder) -> None:
        self.r = recorder

    def summary(self, indices: Iterable[int]) -> CallSummary:
        r = self.r
        counts: dict[int, int] = {}
        latencies = []
        placements: dict[int, dict[int, int]] = {}
        started, finished, status, keys, endpoints = r.started, r.finished, r.status, r.key, r.endpoint
        for i in indices:
            code = status[i]
            counts[code] = counts.get(code, 0) + 1
            latencies.append(finished[i] - started[i])
            key = keys[i]
            if key >= 0:
                per_endpoint = placements.setdefault(key, {})
                per_endpoint[endpoints[i]] = per_endpoint.get(endpoints[i], 0) + 1
        by_status = {StatusCode(code).name: counts[code] for code in sorted(counts)}
        affinity = math.nan
        if placements:
            keyed = sum(sum(p.values()) for p in placements.values())
            affinity = sum(max(p.values()) for p in placements.values()) / keyed
        return CallSummary(len(latencies), by_status, LatencySummary.of(latencies), affinity)

    def where(self, column: Sequence[int], value: int) -> list[int]:
        return [i for i, v in enumerate(column) if v == value]


def build_report(scenario: Scenario, recorder: RunRecorder) -> Report:
    calls = _Calls(recorder)
    everything = range(len(recorder))
    endpoint_ids = {name: i for i, name in enumerate(recorder.endpoint_names)}
    client_ids = {name: i for i, name in enumerate(recorder.client_names)}
    service_ids = {name: i for i, name in enumerate(recorder.service_names)}

    endpoints = []
    for service in scenario.services:
        for name in service.replica_names:
            member = calls.where(recorder.endpoint, endpoint_ids[name]) if name in endpoint_ids else []
            transitions = tuple(t for t in recorder.health if t.endpoint == name)
            endpoints.append(EndpointReport(name, service.name, calls.summary(member), transitions))
    clients = tuple(
        (
            c.name,
            calls.summary(calls.where(recorder.client, client_ids[c.name]) if c.name in client_ids else []),
        )
        for c in scenario.clients
    )

    width = _bucket_width(scenario.duration)
    buckets: list[list[int]] = [[] for _ in range(math.ceil(scenario.duration / width))]
    for i, start in enumerate(recorder.started):
        slot = min(int(start / width), len(buckets) - 1)
        buckets[slot].append(i)
    timeline = tuple(Bucket(n * width, calls.summary(b)) for n, b in enumerate(buckets))

    def scoped(config: AssertionConfig) -> list[int]:
        if config.scope == "run":
            chosen: Iterable[int] = everything
        else:
            column, ids = {
                "service": (recorder.service, service_ids),
                "replica": (recorder.endpoint, endpoint_ids),
                "client": (recorder.client, client_ids),
            }[config.scope]
            assert config.scope_name is not None
            wanted = ids.get(config.scope_name)
            chosen = [] if wanted is None else calls.where(column, wanted)
        if config.window is None:
            return list(chosen)
        low, high = config.window
        return [i for i in chosen if low <= recorder.started[i] < high]

    assertions = tuple(_evaluate(a, calls.summary(scoped(a))) for a in scenario.assertions)
    return Report(
        scenario=scenario.name,
        path=str(scenario.path),
        seed=scenario.seed,
        duration=scenario.duration,
        totals=calls.summary(everything),
        unrouted=calls.summary(calls.where(recorder.endpoint, -1)),
        endpoints=tuple(endpoints),
        clients=clients,
        faults=tuple(recorder.faults),
        health=tuple(recorder.health),
        assertions=assertions,
        timeline=timeline,
        bucket_width=width,
    )


def _bucket_width(duration: float) -> float:
    """One-second buckets, widened to whole seconds so that no run has more than 120."""
    return float(max(1, math.ceil(duration / 120)))


def observe(metric: str, calls: CallSummary) -> float:
    if metric == "success_rate":
        return calls.success_rate
    if metric == "requests":
        return float(calls.requests)
    if metric == "errors":
        return float(calls.failed)
    if metric == "key_affinity":
        return calls.key_affinity
    return calls.latency.metric(metric.removeprefix("latency."))


def _evaluate(config: AssertionConfig, calls: CallSummary) -> AssertionResult:
    observed = observe(config.metric, calls)
    # No calls in scope means nothing was shown: such an assertion fails rather than passes vacuously.
    passed = not math.isnan(observed) and _OPERATORS[config.op](observed, config.value)
    return AssertionResult(config, observed, passed)
