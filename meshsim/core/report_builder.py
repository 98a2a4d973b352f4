"""`build_report`: a recorded run made into a `Report`, once, after the run.

Puts the measurements (`core/measurements.py`) and the verdicts (`core/assertions.py`)
together: totals, each replica and client, the timeline in buckets, the mesh's state
changes as recorded.
"""

from __future__ import annotations

import math
from array import array

from meshsim.core.assertions import evaluate_assertions
from meshsim.core.measurements import RecordedRun
from meshsim.core.recording import EjectionRecord, HealthTransition, RunRecorder
from meshsim.core.report import Bucket, EndpointReport, Report
from meshsim.core.scenario import Scenario


def build_report(scenario: Scenario, recorder: RunRecorder, mode: str = "sim", interrupted: bool = False) -> Report:
    run = RecordedRun(recorder)
    r = recorder
    all_calls = run.calls("run", None)
    all_attempts = run.attempts("run", None)

    # Grouped once, in the order recorded: a scan per replica is replicas x transitions.
    health: dict[str, list[HealthTransition]] = {}
    for transition in r.health:
        health.setdefault(transition.endpoint, []).append(transition)
    ejections: dict[str, list[EjectionRecord]] = {}
    for ejection in r.ejections:
        ejections.setdefault(ejection.endpoint, []).append(ejection)
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
                    health=tuple(health.get(name, ())),
                    ejections=tuple(ejections.get(name, ())),
                )
            )
    clients = tuple((c.name, run.calls_summary(run.calls("client", c.name))) for c in scenario.clients)

    width = _bucket_width(scenario.duration)
    slots = math.ceil(scenario.duration / width)
    buckets = [array("q") for _ in range(slots)]
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
        mode=mode,
        interrupted=interrupted,
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
        assertions=evaluate_assertions(scenario, run),
        timeline=timeline,
        bucket_width=width,
    )


def _bucket_width(duration: float) -> float:
    """One-second buckets, widened to whole seconds so that no run has more than 120."""
    return float(max(1, math.ceil(duration / 120)))
