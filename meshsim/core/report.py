"""The report model: computed once from the recorder, rendered as JSON here and as rich text by the CLI.

Calls are what clients saw (one per call started); attempts are what replicas saw
(the first attempt, retries and hedges). Totals and clients count calls; replicas
count the attempts they received.
"""

from __future__ import annotations

import json
import math
import operator
from array import array
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import attrs

from meshsim.core.events import AttemptKind, BreakerChanged
from meshsim.core.recording import EjectionRecord, FaultRecord, HealthTransition, PanicPeriod, RunRecorder
from meshsim.core.scenario import EVENT_METRICS, AssertionConfig, Scenario
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
_RATIOS = ("success_rate", "key_affinity", "amplification")
_ATTEMPT_METRICS = ("attempts", "retries", "hedges", "amplification")


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
    """Counts by status and latency of a set of calls (or of attempts).

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
class AttemptCounts:
    attempts: int
    retries: int
    hedges: int
    amplification: float


@attrs.frozen
class EndpointReport:
    name: str
    service: str
    calls: CallSummary
    counts: AttemptCounts
    health: tuple[HealthTransition, ...]
    ejections: tuple[EjectionRecord, ...]


@attrs.frozen
class Bucket:
    start: float
    calls: CallSummary
    attempts: int


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
    counts: AttemptCounts
    unrouted: CallSummary
    not_attempted: int
    refused: dict[str, int]
    endpoints: tuple[EndpointReport, ...]
    clients: tuple[tuple[str, CallSummary], ...]
    faults: tuple[FaultRecord, ...]
    health: tuple[HealthTransition, ...]
    ejections: tuple[EjectionRecord, ...]
    breakers: tuple[BreakerChanged, ...]
    panics: tuple[PanicPeriod, ...]
    assertions: tuple[AssertionResult, ...]
    timeline: tuple[Bucket, ...]
    bucket_width: float
    preset: str = "grpc"

    @property
    def passed(self) -> bool:
        return all(a.passed for a in self.assertions)

    @property
    def budget_exhausted(self) -> int:
        return sum(self.refused.values())

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": REPORT_SCHEMA,
            "scenario": self.scenario,
            "path": self.path,
            "seed": self.seed,
            "preset": self.preset,
            "duration_s": self.duration,
            "passed": self.passed,
            "totals": {
                **_totals(self.totals),
                **_counts_of(self.counts),
                "budget_exhausted": self.budget_exhausted,
                "refused": dict(self.refused),
                "not_attempted": self.not_attempted,
                "key_affinity": _ratio(self.totals.key_affinity),
            },
            "latency_ms": _latency(self.totals.latency),
            "unrouted": _requests(self.unrouted),
            "endpoints": [
                {
                    "name": e.name,
                    "service": e.service,
                    **_requests(e.calls),
                    **_counts_of(e.counts),
                    "latency_ms": _latency(e.calls.latency),
                    "health_transitions": [_transition(t) for t in e.health],
                    "ejections": [_ejection(j) for j in e.ejections],
                }
                for e in self.endpoints
            ],
            "clients": [
                {"name": name, **_requests(calls), "latency_ms": _latency(calls.latency)}
                for name, calls in self.clients
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
            "ejections": [_ejection(j) for j in self.ejections],
            "breaker_transitions": [
                {"at_s": _round(b.at), "client": b.client, "scope": b.scope, "target": b.target, "state": b.state}
                for b in self.breakers
            ],
            "panic_periods": [
                {
                    "client": p.client,
                    "service": p.service,
                    "start_s": _round(p.start),
                    "end_s": None if p.end is None else _round(p.end),
                }
                for p in self.panics
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
                        "attempts": b.attempts,
                        "p50_ms": _number(b.calls.latency.p50),
                        "p99_ms": _number(b.calls.latency.p99),
                    }
                    for b in self.timeline
                ],
            },
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, allow_nan=False) + "\n"


def _round(value: float) -> float:
    return round(value, 6)


def _ratio(value: float) -> float | None:
    return None if math.isnan(value) else round(value, 6)


def _number(value: float) -> float | None:
    return None if math.isnan(value) else round(value, 3)


def _latency(latency: LatencySummary) -> dict[str, float | None]:
    return {name: _number(getattr(latency, name)) for name in ("p50", "p90", "p99", "p999", "mean", "max")}


def _requests(calls: CallSummary) -> dict[str, Any]:
    return {"requests": calls.requests, "by_status": dict(calls.by_status)}


def _totals(calls: CallSummary) -> dict[str, Any]:
    return {"requests": calls.requests, "ok": calls.ok, "failed": calls.failed, "by_status": dict(calls.by_status)}


def _counts_of(counts: AttemptCounts) -> dict[str, Any]:
    return {
        "attempts": counts.attempts,
        "retries": counts.retries,
        "hedges": counts.hedges,
        "amplification": _ratio(counts.amplification),
    }


def _transition(t: HealthTransition) -> dict[str, Any]:
    return {"at_s": _round(t.at), "client": t.client, "healthy": t.healthy, "last_probe": t.last_probe.value}


def _ejection(j: EjectionRecord) -> dict[str, Any]:
    return {
        "at_s": _round(j.at),
        "client": j.client,
        "endpoint": j.endpoint,
        "detector": j.detector,
        "duration_s": _round(j.duration),
        "returned_at_s": None if j.returned_at is None else _round(j.returned_at),
    }


def _summary(
    started: array[float],
    finished: array[float],
    status: array[int],
    indices: Iterable[int],
    keys: array[int] | None = None,
    endpoints: array[int] | None = None,
) -> CallSummary:
    counts: dict[int, int] = {}
    latencies = []
    placements: dict[int, dict[int, int]] = {}
    for i in indices:
        code = status[i]
        counts[code] = counts.get(code, 0) + 1
        latencies.append(finished[i] - started[i])
        if keys is not None and endpoints is not None and keys[i] >= 0:
            per_endpoint = placements.setdefault(keys[i], {})
            per_endpoint[endpoints[i]] = per_endpoint.get(endpoints[i], 0) + 1
    by_status = {StatusCode(code).name: counts[code] for code in sorted(counts)}
    affinity = math.nan
    if placements:
        keyed = sum(sum(p.values()) for p in placements.values())
        affinity = sum(max(p.values()) for p in placements.values()) / keyed
    return CallSummary(len(latencies), by_status, LatencySummary.of(latencies), affinity)


class _Run:
    """Index sets over the recorder's arrays by scope and window, and the summaries of them."""

    def __init__(self, scenario: Scenario, recorder: RunRecorder) -> None:
        self.scenario = scenario
        self.r = recorder
        self.service_of = {name: s.name for s in scenario.services for name in s.replica_names}
        self.end = max(scenario.duration, max(recorder.finished, default=0.0))
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
        kinds = self.r.a_kind
        retries = sum(1 for i in attempts if kinds[i] == AttemptKind.RETRY)
        hedges = sum(1 for i in attempts if kinds[i] == AttemptKind.HEDGE)
        return AttemptCounts(len(attempts), retries, hedges, len(attempts) / calls if calls else math.nan)

    def replica_counts(self, attempts: Sequence[int]) -> AttemptCounts:
        """Per replica, amplification is the attempts it received per first attempt it received."""
        firsts = sum(1 for i in attempts if self.r.a_kind[i] == AttemptKind.FIRST)
        return self.counts(attempts, firsts)

    @staticmethod
    def _select(
        index: dict[str, tuple[dict[int, list[int]], Any]], size: int, scope: str, name: str | None
    ) -> list[int]:
        if scope == "run":
            return list(range(size))
        groups, names = index[scope]
        wanted = names.find(name)
        return [] if wanted is None else groups.get(wanted, [])

    def calls(self, scope: str, name: str | None, window: tuple[float, float] | None = None) -> list[int]:
        started = self.r.started
        return _within(self._select(self._calls, len(started), scope, name), started, window)

    def attempts(self, scope: str, name: str | None, window: tuple[float, float] | None = None) -> list[int]:
        started = self.r.a_started
        return _within(self._select(self._attempts, len(started), scope, name), started, window)

    def unrouted(self) -> list[int]:
        return self._attempts["replica"][0].get(-1, [])

    def measure(self, config: AssertionConfig) -> float:
        metric, scope, name, window = config.metric, config.scope, config.scope_name, config.window
        if metric in EVENT_METRICS:
            return self._event_metric(metric, scope, name, window)
        if metric in _ATTEMPT_METRICS:
            attempts = self.attempts(scope, name, window)
            if scope == "replica":
                counts = self.replica_counts(attempts)
            else:
                counts = self.counts(attempts, len(self.calls(scope, name, window)))
            return float(getattr(counts, metric))
        if scope == "replica":
            summary = self.attempts_summary(self.attempts(scope, name, window))
        else:
            summary = self.calls_summary(self.calls(scope, name, window))
        return _call_metric(metric, summary)

    def _in_scope(self, scope: str, name: str | None, client: str, service: str, replica: str | None) -> bool:
        if scope == "run":
            return True
        if scope == "client":
            return client == name
        if scope == "service":
            return service == name
        return replica is not None and replica == name

    def _event_metric(self, metric: str, scope: str, name: str | None, window: tuple[float, float] | None) -> float:
        low, high = window if window is not None else (-math.inf, math.inf)
        r = self.r
        if metric == "ejections":
            return float(
                sum(
                    1
                    for j in r.ejections
                    if low <= j.at < high
                    and self._in_scope(scope, name, j.client, self.service_of.get(j.endpoint, ""), j.endpoint)
                )
            )
        if metric == "breaker_opens":
            count = 0
            for b in r.breakers:
                replica = b.target if b.scope == "replica" else None
                service = self.service_of.get(b.target, b.target)
                if b.state == "OPEN" and low <= b.at < high and self._in_scope(scope, name, b.client, service, replica):
                    count += 1
            return float(count)
        if metric == "budget_exhausted":
            return float(
                sum(
                    1
                    for e in r.refused
                    if low <= e.at < high and self._in_scope(scope, name, e.client, e.service, None)
                )
            )
        seconds = 0.0
        for p in r.panics:
            if self._in_scope(scope, name, p.client, p.service, None):
                start, end = max(p.start, low), min(self.end if p.end is None else p.end, high)
                seconds += max(0.0, end - start)
        return seconds


def _group(column: array[int]) -> dict[int, list[int]]:
    groups: dict[int, list[int]] = {}
    for i, value in enumerate(column):
        found = groups.get(value)
        if found is None:
            groups[value] = [i]
        else:
            found.append(i)
    return groups


def _within(indices: list[int], started: array[float], window: tuple[float, float] | None) -> list[int]:
    if window is None:
        return indices
    low, high = window
    return [i for i in indices if low <= started[i] < high]


def _call_metric(metric: str, calls: CallSummary) -> float:
    if metric == "success_rate":
        return calls.success_rate
    if metric == "requests":
        return float(calls.requests)
    if metric == "errors":
        return float(calls.failed)
    if metric == "key_affinity":
        return calls.key_affinity
    return calls.latency.metric(metric.removeprefix("latency."))


def build_report(scenario: Scenario, recorder: RunRecorder) -> Report:
    run = _Run(scenario, recorder)
    r = recorder
    all_calls = run.calls("run", None)
    all_attempts = run.attempts("run", None)

    endpoints = []
    for service in scenario.services:
        for name in service.replica_names:
            attempts = run.attempts("replica", name)
            endpoints.append(
                EndpointReport(
                    name=name,
                    service=service.name,
                    calls=run.attempts_summary(attempts),
                    counts=run.replica_counts(attempts),
                    health=tuple(t for t in r.health if t.endpoint == name),
                    ejections=tuple(j for j in r.ejections if j.endpoint == name),
                )
            )
    clients = tuple((c.name, run.calls_summary(run.calls("client", c.name))) for c in scenario.clients)

    width = _bucket_width(scenario.duration)
    slots = math.ceil(scenario.duration / width)
    buckets: list[list[int]] = [[] for _ in range(slots)]
    for i, start in enumerate(r.started):
        buckets[min(int(start / width), slots - 1)].append(i)
    attempts_per_bucket = [0] * slots
    for start in r.a_started:
        attempts_per_bucket[min(int(start / width), slots - 1)] += 1
    timeline = tuple(Bucket(n * width, run.calls_summary(b), attempts_per_bucket[n]) for n, b in enumerate(buckets))

    refused: dict[str, int] = {}
    for event in r.refused:
        refused[event.reason] = refused.get(event.reason, 0) + 1

    return Report(
        scenario=scenario.name,
        preset=scenario.preset,
        path=str(scenario.path),
        seed=scenario.seed,
        duration=scenario.duration,
        totals=run.calls_summary(all_calls),
        counts=run.counts(all_attempts, len(all_calls)),
        unrouted=run.attempts_summary(run.unrouted()),
        not_attempted=sum(1 for a in r.attempts if a == 0),
        refused=dict(sorted(refused.items())),
        endpoints=tuple(endpoints),
        clients=clients,
        faults=tuple(r.faults),
        health=tuple(r.health),
        ejections=tuple(r.ejections),
        breakers=tuple(r.breakers),
        panics=tuple(r.panics),
        assertions=tuple(_evaluate(a, run.measure(a)) for a in scenario.assertions),
        timeline=timeline,
        bucket_width=width,
    )


def _bucket_width(duration: float) -> float:
    """One-second buckets, widened to whole seconds so that no run has more than 120."""
    return float(max(1, math.ceil(duration / 120)))


def _evaluate(config: AssertionConfig, observed: float) -> AssertionResult:
    # A rate or latency over no calls is NaN: nothing was shown, so the assertion fails rather than
    # passing vacuously. Counts over no calls are 0, a real observation (`requests == 0` can pass).
    passed = not math.isnan(observed) and _OPERATORS[config.op](observed, config.value)
    return AssertionResult(config, observed, passed)
