"""Health checks as timers (runtime.timed_health) decide what the task checkers decide.

The simulator's checkers are timer callbacks; the live runtime's are tasks. Over the
same scenario both must take the same endpoints out and back at the same instants:
only the order of two clients' transitions at one instant may differ (tasks woken
together run in the scheduler's seeded order, timers in the order they were set).
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from meshsim.core.health import HealthConfig
from meshsim.core.scenario_loader import load_scenario
from meshsim.core.status import HealthStatus
from meshsim.runtime import assembly
from meshsim.runtime.timed_health import TimedHealthChecker
from meshsim.runtime.timers import Cancellable, TimerQueue
from meshsim.runtime.transport import OnHealth
from meshsim.sim.runner import run_scenario
from tests.conftest import ROOT


def transitions(report_json: str) -> list[tuple[Any, ...]]:
    report = json.loads(report_json)
    found = [
        (t["at_s"], t["client"], endpoint["name"], t["healthy"], t["last_probe"])
        for endpoint in report["endpoints"]
        for t in endpoint["health_transitions"]
    ]
    return sorted(found)


@pytest.mark.parametrize(
    "name", ["failover", "faults_tour", "stream_commit", "panic", "outlier_detection", "circuit_breaker"]
)
def test_timed_checkers_decide_as_task_checkers(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    scenario = load_scenario(ROOT / "scenarios" / f"{name}.toml")
    timed = transitions(run_scenario(scenario).to_json())
    monkeypatch.setattr(assembly, "offers_timed_health", lambda transport: False)
    tasks = transitions(run_scenario(scenario).to_json())
    assert timed == tasks
    assert timed or not scenario.health.enabled


def test_envoy_polling_decides_as_task_checkers(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    text = (ROOT / "scenarios" / "failover.toml").read_text(encoding="utf-8")
    path = tmp_path / "polled.toml"
    path.write_text(text.replace('preset = "grpc"', 'preset = "envoy"'), encoding="utf-8")
    scenario = load_scenario(path)
    assert not scenario.health.watch
    timed = transitions(run_scenario(scenario).to_json())
    monkeypatch.setattr(assembly, "offers_timed_health", lambda transport: False)
    assert timed == transitions(run_scenario(scenario).to_json())
    assert timed


class ScriptedProbes:
    """Answers probes after `latency` from a script; None times out. Offers no Watch streams."""

    def __init__(self, timers: TimerQueue, script: list[HealthStatus | None], latency: float = 0.01) -> None:
        self._timers = timers
        self._script = script
        self._latency = latency

    def probe(self, endpoint: str, service: str, on_status: OnHealth, timeout: float) -> Cancellable:
        status = self._script.pop(0)
        if status is None:
            return self._timers.call_at(self._timers.now() + timeout, on_status, HealthStatus.TIMEOUT)
        return self._timers.call_at(self._timers.now() + self._latency, on_status, status)

    def watch(self, endpoint: str, service: str, on_status: OnHealth, on_end: Any) -> Cancellable:
        raise AssertionError("polled checkers open no Watch stream")


class Sink:
    def __init__(self) -> None:
        self.seen: list[tuple[float, str, HealthStatus]] = []

    def health_probed(self, endpoint: str, status: HealthStatus) -> None:
        self.seen.append((trio.current_time(), "probed", status))

    def health_reported(self, endpoint: str, status: HealthStatus) -> None:
        self.seen.append((trio.current_time(), "reported", status))


async def test_polled_probes_on_interval_and_time_out(autojump_clock: trio.testing.MockClock) -> None:
    config = HealthConfig(interval=1.0, timeout=0.25, initial_healthy=True, watch=False)
    timers = TimerQueue()
    sink = Sink()
    script: list[HealthStatus | None] = [HealthStatus.SERVING, None, HealthStatus.NOT_SERVING]
    checker = TimedHealthChecker("hc", "e", "s", config, ScriptedProbes(timers, script), sink, timers, random.Random(1))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(timers.run)
        checker.start()
        await trio.sleep(3.6)
        checker.stop()
        nursery.cancel_scope.cancel()
    assert [(round(at, 3), status) for at, _, status in sink.seen] == [
        (1.01, HealthStatus.SERVING),
        (2.26, HealthStatus.TIMEOUT),
        (3.27, HealthStatus.NOT_SERVING),
    ]
