"""Assertion evaluation: each assertion's metric looked up by scope and window, and its verdict.

A metric is measured over calls (what clients saw) or, for a replica, over the
attempts it received; event metrics (ejections, breaker opens, refused retries, panic
seconds) are counted from the recorded state changes. The names and their meanings
are the scenario model's (`core/scenario.py`).
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable

from meshsim.core.measurements import RecordedRun
from meshsim.core.report import AssertionResult, CallSummary
from meshsim.core.scenario import EVENT_METRICS, AssertionConfig, Scenario

_OPERATORS: dict[str, Callable[[float, float], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "==": operator.eq,
    "!=": operator.ne,
}
_ATTEMPT_METRICS = ("attempts", "retries", "hedges", "amplification")


def evaluate_assertions(scenario: Scenario, run: RecordedRun) -> tuple[AssertionResult, ...]:
    """The verdict of each of the scenario's assertions on the recorded run, in file order."""
    metrics = _Metrics(scenario, run)
    return tuple(_evaluate(a, metrics.measure(a)) for a in scenario.assertions)


def _evaluate(config: AssertionConfig, observed: float) -> AssertionResult:
    # A rate or latency over no calls is NaN: nothing was shown, so the assertion fails rather than
    # passing vacuously. Counts over no calls are 0, a real observation (`requests == 0` can pass).
    passed = not math.isnan(observed) and _OPERATORS[config.op](observed, config.value)
    return AssertionResult(config, observed, passed)


class _Metrics:
    """An assertion's metric, by scope and window, over one recorded run."""

    def __init__(self, scenario: Scenario, run: RecordedRun) -> None:
        self.run = run
        self.service_of = {name: s.name for s in scenario.services for name in s.replica_names}
        self.end = max(scenario.duration, max(run.r.finished, default=0.0))

    def measure(self, config: AssertionConfig) -> float:
        run = self.run
        metric, scope, name, window = config.metric, config.scope, config.scope_name, config.window
        if metric in EVENT_METRICS:
            return self._event_metric(metric, scope, name, window)
        if metric in _ATTEMPT_METRICS:
            attempts = run.attempts(scope, name, window)
            if scope == "replica":
                counts = run.replica_counts(attempts)
            else:
                counts = run.counts(attempts, len(run.calls(scope, name, window)))
            return float(getattr(counts, metric))
        if scope == "replica":
            summary = run.attempts_summary(run.attempts(scope, name, window))
        else:
            summary = run.calls_summary(run.calls(scope, name, window))
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
        r = self.run.r
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
