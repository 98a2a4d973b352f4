"""Fault kinds are an extension point: a kind is one module, registered in core/faults/__init__.py.

A kind declared here, in a test, and registered the way the shipped ones are, is read from a
scenario file, checked, described in the report and felt by the simulated replicas, with no
other change to the loader or the simulator.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import attrs
import pytest

from meshsim.core import faults
from meshsim.core.config import Table
from meshsim.core.faults import Conditions, FaultContext, FaultKind
from meshsim.core.scenario import ScenarioError
from meshsim.core.scenario_loader import load_scenario
from meshsim.core.status import StatusCode
from meshsim.sim.runner import run_scenario


@attrs.frozen
class Brownout:
    """Slow and failing at once: what a replica under memory pressure does."""

    share: float

    def describe(self) -> str:
        return f"{self.share:.0%} slow and failing"

    def affect(self, conditions: Conditions) -> None:
        conditions.multiply *= 10
        conditions.errors.append((self.share, StatusCode.RESOURCE_EXHAUSTED, None))


def read(table: Table, context: FaultContext) -> Brownout:
    return Brownout(table.number("share", above=0.0, maximum=1.0))


BROWNOUT = FaultKind("brownout", ("share",), read, "slow and failing a share of calls")

SCENARIO = """\
schema = "meshsim/v1"
seed = 3
duration = "4s"

[[service]]
name = "api"
replicas = 2
latency = "10ms"

[health]
enabled = false

[[client]]
name = "c"
rate = 100

[[fault]]
at = "1s"
for = "2s"
action = "brownout"
target = "api/0"
{extra}
"""


@pytest.fixture
def brownout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(faults.KINDS, "brownout", BROWNOUT)
    monkeypatch.setattr("meshsim.core.scenario_loader._FAULT_KEYS", (*faults.KINDS["errors"].keys, "share"))


def test_a_kind_registered_in_one_place_is_read_described_and_felt(
    brownout: None, write_scenario: Callable[[str], Path]
) -> None:
    scenario = load_scenario(write_scenario(SCENARIO.format(extra="share = 1.0")))
    (fault,) = scenario.faults
    assert (fault.action, fault.describe()) == ("brownout", "100% slow and failing")
    report = run_scenario(scenario)
    assert report.faults[0].detail == "100% slow and failing"
    browned = next(e for e in report.endpoints if e.name == "api/0")
    assert browned.calls.by_status.get("RESOURCE_EXHAUSTED", 0) > 50
    assert browned.calls.latency.p90 == pytest.approx(100.0)  # ten times its 10 ms


def test_its_keys_are_checked_like_any_other(brownout: None, write_scenario: Callable[[str], Path]) -> None:
    with pytest.raises(ScenarioError, match=r"fault\[0\]\.share: must be at most 1, got 2"):
        load_scenario(write_scenario(SCENARIO.format(extra="share = 2.0")))
    with pytest.raises(ScenarioError, match=r"fault\[0\]\.rate: does not apply to a brownout fault"):
        load_scenario(write_scenario(SCENARIO.format(extra="share = 0.5\nrate = 0.5")))


def test_every_shipped_kind_is_registered_with_its_keys_and_summary() -> None:
    assert list(faults.KINDS) == ["kill", "latency", "errors", "blackhole", "health", "partition"]
    for kind in faults.KINDS.values():
        assert kind.summary and all(isinstance(key, str) for key in kind.keys)
