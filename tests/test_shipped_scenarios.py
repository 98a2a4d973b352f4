"""Every shipped scenario runs, passes, and accounts for every call it started."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import attrs
import pytest

from meshsim.core.events import AttemptFinished, RequestFinished, RequestStarted
from meshsim.core.pickers import POLICIES, BalancerConfig
from meshsim.core.report import Report
from meshsim.core.scenario import Scenario
from meshsim.core.scenario_loader import load_scenario
from meshsim.runtime.observer import Observer
from meshsim.sim.runner import run_scenario
from tests.conftest import ROOT, SCENARIOS


def run_counting(
    scenario: Scenario, on_finished: Callable[[RequestFinished], None] | None = None
) -> tuple[Report, dict[str, int], dict[str, int]]:
    """Run `scenario`, counting calls started and finished per client; checks attempts add up per call."""
    observer = Observer()
    started: dict[str, int] = {}
    finished: dict[str, int] = {}
    attempts_sent = 0
    attempts_claimed = 0

    def on_start(event: RequestStarted) -> None:
        started[event.client] = started.get(event.client, 0) + 1

    def on_attempt(event: AttemptFinished) -> None:
        nonlocal attempts_sent
        attempts_sent += 1

    def on_finish(event: RequestFinished) -> None:
        nonlocal attempts_claimed
        finished[event.client] = finished.get(event.client, 0) + 1
        attempts_claimed += event.attempts

    observer.subscribe(RequestStarted, on_start)
    observer.subscribe(AttemptFinished, on_attempt)
    observer.subscribe(RequestFinished, on_finish)
    if on_finished is not None:
        observer.subscribe(RequestFinished, on_finished)
    report = run_scenario(scenario, observer=observer)
    assert attempts_sent == attempts_claimed == report.counts.attempts
    return report, started, finished


def assert_accounts_add_up(report: Report) -> None:
    totals, counts = report.totals, report.counts
    assert totals.requests == sum(totals.by_status.values())
    assert totals.ok + totals.failed == totals.requests
    assert totals.requests == sum(calls.requests for _, calls in report.clients)
    assert totals.requests == sum(b.calls.requests for b in report.timeline)
    # Replicas count attempts: every attempt reached one replica or none.
    assert counts.attempts == sum(e.calls.requests for e in report.endpoints) + report.unrouted.requests
    assert counts.attempts == sum(b.attempts for b in report.timeline)
    assert counts.retries >= sum(e.counts.retries for e in report.endpoints)
    assert counts.hedges >= sum(e.counts.hedges for e in report.endpoints)
    assert counts.attempts >= totals.requests - report.not_attempted


def test_there_is_a_scenario_per_policy() -> None:
    policies = {load_scenario(path).balancer.policy for path in SCENARIOS}
    assert policies == set(POLICIES)


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.stem)
def test_shipped_scenario_passes_and_loses_nothing(path: Path) -> None:
    report, started, finished = run_counting(load_scenario(path))
    failed = [(a.config.name, a.observed) for a in report.assertions if not a.passed]
    assert not failed
    assert report.assertions, "a shipped scenario must assert something"
    assert started == finished
    assert sum(started.values()) == report.totals.requests > 0
    assert_accounts_add_up(report)


def test_failover_detects_the_kill_and_takes_the_replica_back() -> None:
    report = run_scenario(load_scenario(ROOT / "scenarios/failover.toml"))
    killed = next(e for e in report.endpoints if e.name == "api/1")
    assert [t.healthy for t in killed.health] == [True, False, True]
    first, down, up = killed.health
    assert first.at < 0.01  # in after its first check, made at once

    assert 10.0 <= down.at < 12.0  # its health stream breaks as it dies
    assert 25.0 < up.at < 27.0
    assert [(f.action, f.target, f.applied_at, f.cleared_at) for f in report.faults] == [("kill", "api/1", 10.0, 25.0)]
    assert set(report.totals.by_status) == {"OK", "UNAVAILABLE"}


def test_least_connections_beats_round_robin_on_a_slow_replica() -> None:
    scenario = load_scenario(ROOT / "scenarios/least_connections.toml")
    least = run_scenario(scenario)
    robin = run_scenario(attrs.evolve(scenario, balancer=BalancerConfig(policy="round_robin")))
    assert least.passed
    assert not robin.passed
    assert least.totals.latency.p90 < robin.totals.latency.p90 / 2


def test_consistent_hash_keeps_keys_where_round_robin_scatters_them() -> None:
    scenario = load_scenario(ROOT / "scenarios/consistent_hash.toml")
    ring = run_scenario(scenario)
    robin = run_scenario(attrs.evolve(scenario, balancer=BalancerConfig(policy="round_robin")))
    assert ring.totals.key_affinity > 0.85
    assert robin.totals.key_affinity < 0.6
