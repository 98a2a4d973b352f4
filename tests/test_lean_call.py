"""A load generator's call on a channel with no policy runs as a LeanCall, and the recorder takes
its fields without events: both must leave the report exactly as the general path does."""

from __future__ import annotations

import pytest

from meshsim.core.events import AttemptFinished, RequestFinished
from meshsim.core.scenario_loader import load_scenario
from meshsim.runtime import channel as channel_module
from meshsim.runtime.channel import MeshChannel
from meshsim.runtime.observer import Observer
from meshsim.sim.runner import run_scenario
from tests.conftest import ROOT

SCENARIOS = ["round_robin", "least_connections", "p2c", "faults_tour", "failover", "consistent_hash", "peak_ewma"]


def general_send(self: MeshChannel, call: object, on_ended: object = None) -> None:
    self.start(call, None if on_ended is None else channel_module._times(on_ended))  # type: ignore[arg-type]


@pytest.mark.parametrize("name", SCENARIOS)
def test_lean_calls_report_as_call_runs(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    scenario = load_scenario(ROOT / "scenarios" / f"{name}.toml")
    lean = run_scenario(scenario).to_json()
    monkeypatch.setattr(MeshChannel, "send", general_send)
    assert run_scenario(scenario).to_json() == lean


@pytest.mark.parametrize("name", ["round_robin", "faults_tour"])
def test_direct_recording_reports_as_events(name: str) -> None:
    scenario = load_scenario(ROOT / "scenarios" / f"{name}.toml")
    direct = run_scenario(scenario).to_json()
    observer = Observer()
    seen: list[object] = []
    observer.subscribe(RequestFinished, seen.append)
    observer.subscribe(AttemptFinished, seen.append)  # a second listener: events are built again
    assert run_scenario(scenario, observer=observer).to_json() == direct
    assert seen


def test_a_direct_listener_stops_being_direct_when_another_subscribes() -> None:
    observer = Observer()
    calls: list[tuple[object, ...]] = []
    observer.subscribe_direct(RequestFinished, lambda event: None, lambda *fields: calls.append(fields))
    assert observer.direct(RequestFinished) is not None
    observer.subscribe(RequestFinished, lambda event: None)
    assert observer.direct(RequestFinished) is None
    assert observer.direct(AttemptFinished) is None
