"""The report model and its JSON rendering (`Report.to_dict`, `Report.to_json`).

Frozen classes that hold the numbers and know how to write them: the numbers are
measured in `core/measurements.py`, the verdicts given in `core/assertions.py`, the
whole put together by `core/report_builder.py`; `cli/render.py` renders the same model
as rich text.

Calls are what clients saw (one per call started); attempts are what replicas saw
(the first attempt, retries and hedges). Totals and clients count calls; replicas
count the attempts they received.
"""

from __future__ import annotations

import json
import math
from typing import Any

import attrs

from meshsim.core.events import BreakerChanged
from meshsim.core.recording import EjectionRecord, FaultRecord, HealthTransition, PanicPeriod
from meshsim.core.scenario import AssertionConfig

REPORT_SCHEMA = "meshsim/report/v1"

# Assertion metrics that are ratios: observed values rounded to 6 places, as ratios are, not 3.
_RATIOS = ("success_rate", "key_affinity", "amplification")


@attrs.frozen
class LatencySummary:
    """Milliseconds; NaN when there were no calls."""

    p50: float
    p90: float
    p99: float
    p999: float
    mean: float
    max: float

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
    # "sim" (virtual time) or "live" (real replicas, wall time); a live run stopped early is interrupted.
    mode: str = "sim"
    interrupted: bool = False

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
            "mode": self.mode,
            "interrupted": self.interrupted,
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
