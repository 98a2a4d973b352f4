"""Replicas that differ from their service ([[service.replica]]), status mixes (`errors`) and
arrival schedules (`rates`): read, checked, and honoured by the simulator and by live replicas."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import pytest

from meshsim.core.distributions import Constant
from meshsim.core.events import RequestFinished
from meshsim.core.scenario import ReplicaOverride, ServiceConfig
from meshsim.core.scenario_loader import load_scenario
from meshsim.core.status import StatusCode
from meshsim.runtime.observer import Observer
from meshsim.sim.runner import run_scenario
from tests.scenario_files import DROP, Files

SLOW_ONE = """\
schema = "meshsim/v1"
seed = 3
duration = "4s"

[[service]]
name = "api"
replicas = 3
latency = "5ms"

[[service.replica]]
index = 1
latency = { dist = "uniform", low = "100ms", high = "120ms" }

[[service.replica]]
index = 2
errors = { INTERNAL = 0.25, RESOURCE_EXHAUSTED = 0.25 }

[health]
enabled = false

[[client]]
name = "c"
rate = 200
"""


def finished_calls(path: Path, **changes: Any) -> list[RequestFinished]:
    scenario = load_scenario(path)
    if changes:
        scenario = attrs.evolve(scenario, **changes)
    observer = Observer()
    calls: list[RequestFinished] = []
    observer.subscribe(RequestFinished, calls.append)
    run_scenario(scenario, observer=observer)
    return calls


# --------------------------------------------------------------------------- the model


def test_behaviour_is_the_service_with_the_replicas_own_values() -> None:
    slow, errors = Constant(0.5), ((StatusCode.INTERNAL, 0.1),)
    service = ServiceConfig(
        name="api",
        replicas=3,
        latency=Constant(0.01),
        message_latency=Constant(0.0),
        error_rate=0.2,
        overrides=(ReplicaOverride(1, latency=slow), ReplicaOverride(2, errors=errors)),
    )
    assert service.behaviour(0).latency == Constant(0.01)
    assert service.behaviour(0).error_mix == ((StatusCode.UNAVAILABLE, 0.2),)
    assert service.behaviour(1).latency == slow
    assert service.behaviour(1).error_mix == ((StatusCode.UNAVAILABLE, 0.2),)
    assert service.behaviour(2).latency == Constant(0.01)
    assert service.behaviour(2).error_mix == errors
    assert all(service.behaviour(i).overrides == () for i in range(3))
    # An override of no errors at all: the replica fails nothing, whatever its service does.
    healthy = attrs.evolve(service, overrides=(ReplicaOverride(0, errors=()),))
    assert healthy.behaviour(0).error_mix == ()


def test_one_status_draws_exactly_as_error_rate_did() -> None:
    import random

    one = ServiceConfig("api", 1, Constant(0.0), Constant(0.0), error_rate=0.3, error_status=StatusCode.INTERNAL)
    mix = attrs.evolve(one, error_rate=0.0, errors=((StatusCode.INTERNAL, 0.3),))
    a, b = random.Random(5), random.Random(5)
    assert [one.injected_error(a) for _ in range(500)] == [mix.injected_error(b) for _ in range(500)]
    assert a.random() == b.random()  # the same number of draws


# --------------------------------------------------------------------------- the simulator


def test_the_simulator_gives_each_replica_its_own_latency_and_status_mix(
    write_scenario: Callable[[str], Path],
) -> None:
    calls = finished_calls(write_scenario(SLOW_ONE))
    by_replica: dict[str, list[RequestFinished]] = {}
    for call in calls:
        assert call.endpoint is not None
        by_replica.setdefault(call.endpoint, []).append(call)
    durations = {name: sorted(c.finished - c.started for c in found) for name, found in by_replica.items()}
    assert durations["api/0"][0] == pytest.approx(0.005) and durations["api/0"][-1] == pytest.approx(0.005)
    assert durations["api/2"][-1] == pytest.approx(0.005)
    assert durations["api/1"][0] >= 0.1 and durations["api/1"][-1] <= 0.12
    statuses = {name: Counter(c.status for c in found) for name, found in by_replica.items()}
    assert set(statuses["api/0"]) == set(statuses["api/1"]) == {StatusCode.OK}
    mix = statuses["api/2"]
    total = sum(mix.values())
    assert set(mix) == {StatusCode.OK, StatusCode.INTERNAL, StatusCode.RESOURCE_EXHAUSTED}
    assert mix[StatusCode.INTERNAL] / total == pytest.approx(0.25, abs=0.06)
    assert mix[StatusCode.RESOURCE_EXHAUSTED] / total == pytest.approx(0.25, abs=0.06)


def test_errors_with_one_status_is_the_same_run_as_error_rate(files: Files) -> None:
    shorthand = files.load(service={"error_rate": 0.2, "error_status": "INTERNAL"})
    mix = files.load(service={"errors": {"INTERNAL": 0.2}})
    mix = attrs.evolve(mix, path=shorthand.path, name=shorthand.name)  # the same report, but for its name
    assert run_scenario(shorthand).to_json() == run_scenario(mix).to_json()


# --------------------------------------------------------------------------- schedules


def test_a_schedule_sends_at_each_steps_rate(write_scenario: Callable[[str], Path]) -> None:
    path = write_scenario(
        SLOW_ONE.replace("rate = 200", 'rates = [100, 0, 400, 50]\nrate_step = "500ms"').replace(
            'duration = "4s"', 'duration = "3s"'
        )
    )
    scenario = load_scenario(path)
    (client,) = scenario.clients
    assert client.rates == (100.0, 0.0, 400.0, 50.0) and client.rate_step == 0.5
    assert client.rate == pytest.approx((50 + 0 + 200 + 25) / 3)  # the mean over the client's 3 s
    starts = Counter(int(call.started // 0.5) for call in finished_calls(path))
    assert starts[1] == 0 and not set(starts) - {0, 2, 3}  # nothing in the quiet step, or after the last
    assert starts[0] == pytest.approx(50, abs=20)
    assert starts[2] == pytest.approx(200, abs=45)
    assert starts[3] == pytest.approx(25, abs=15)


def test_a_schedule_of_one_step_is_the_same_run_as_a_plain_rate(files: Files) -> None:
    plain = files.load(client={"rate": 120})
    scheduled = files.load(client={"rate": DROP, "rates": [120], "rate_step": "10s"})
    scheduled = attrs.evolve(scheduled, path=plain.path, name=plain.name)
    assert run_scenario(plain).to_json() == run_scenario(scheduled).to_json()


# --------------------------------------------------------------------------- the file


def test_the_file_reads_overrides_and_mixes(write_scenario: Callable[[str], Path]) -> None:
    (service,) = load_scenario(write_scenario(SLOW_ONE)).services
    assert [o.index for o in service.overrides] == [1, 2]
    assert service.overrides[1].errors == ((StatusCode.INTERNAL, 0.25), (StatusCode.RESOURCE_EXHAUSTED, 0.25))
    assert service.overrides[0].errors is None and service.overrides[1].latency is None


@pytest.mark.parametrize(
    ("service", "message"),
    [
        pytest.param(
            {"replica": [{"index": 3, "latency": "1s"}]},
            "service[0].replica[0].index: must be below replicas (3), got 3",
            id="index-too-large",
        ),
        pytest.param({"replica": [{"latency": "1s"}]}, "service[0].replica[0].index: is required", id="index-missing"),
        pytest.param(
            {"replica": [{"index": 1, "latency": "1s"}, {"index": 1, "error_rate": 0.5}]},
            "service[0].replica[1].index: replica 1 already has a [[service.replica]] table",
            id="duplicate",
        ),
        pytest.param(
            {"replica": [{"index": 0}]},
            "service[0].replica[0]: changes nothing: give latency, message_latency, error_rate or errors",
            id="nothing",
        ),
        pytest.param(
            {"replica": [{"index": 0, "latency": {"dist": "gamma"}}]},
            "service[0].replica[0].latency.dist: expected one of constant, uniform, exponential, normal, "
            "lognormal, empirical, got 'gamma'",
            id="bad-latency",
        ),
        pytest.param(
            {"replica": [{"index": 0, "error_rate": 0.1, "errors": {"INTERNAL": 0.1}}]},
            "service[0].replica[0].error_rate: give either errors or error_rate and error_status, not both",
            id="both-error-kinds",
        ),
        pytest.param(
            {"replica": [{"index": 0, "error_status": "INTERNAL"}]},
            "service[0].replica[0].error_rate: is required",
            id="status-without-rate",
        ),
        pytest.param(
            {"replica": [{"index": 0, "latncy": "1s", "error_rate": 0.1}]},
            "service[0].replica[0].latncy: unknown key (did you mean 'latency'?)",
            id="misspelt",
        ),
        pytest.param(
            {"replica": 3},
            "service[0].replica: expected [[service.replica]] tables, got 3 (did you mean 'replicas'?)",
            id="replicas-misspelt",
        ),
        pytest.param(
            {"replica": [{"index": 0, "latency": "1s"}, 2]},
            "service[0].replica: expected [[replica]] tables, got an array",
            id="not-tables",
        ),
        pytest.param(
            {"errors": {"INTERNAL": 0.6, "UNAVAILABLE": 0.5}},
            "service[0].errors: the probabilities add up to 1.1, more than 1",
            id="mix-over-one",
        ),
        pytest.param({"errors": {"OK": 0.1}}, "service[0].errors.OK: an injected error cannot be OK", id="mix-of-ok"),
        pytest.param(
            {"errors": {"BROKEN": 0.1}},
            "service[0].errors.BROKEN: expected a gRPC status code like UNAVAILABLE as the key",
            id="mix-unknown-status",
        ),
        pytest.param(
            {"errors": {"INTERNAL": 0.1, "13": 0.1}},
            "service[0].errors.13: INTERNAL is given twice",
            id="mix-twice",
        ),
        pytest.param(
            {"errors": {"INTERNAL": 1.5}}, "service[0].errors.INTERNAL: must be at most 1, got 1.5", id="mix-rate"
        ),
        pytest.param(
            {"errors": 0.1},
            "service[0].errors: expected a table like { UNAVAILABLE = 0.02 } (status = probability), got 0.1",
            id="mix-not-a-table",
        ),
        pytest.param(
            {"errors": {"INTERNAL": 0.1}, "error_rate": 0.1},
            "service[0].error_rate: give either errors or error_rate and error_status, not both",
            id="mix-and-rate",
        ),
    ],
)
def test_bad_overrides_and_mixes(bad: Callable[..., str], service: dict[str, Any], message: str) -> None:
    assert bad(service=service) == message


@pytest.mark.parametrize(
    ("client", "message"),
    [
        pytest.param(
            {"rate": 10, "rates": [10]},
            "client[0].rates: give either rates (a schedule), rate or concurrency, not two of them",
            id="rate-and-rates",
        ),
        pytest.param(
            {"rate": DROP, "rates": []},
            "client[0].rates: expected an array of 1 to 100,000 rates (calls/s), got []",
            id="empty",
        ),
        pytest.param(
            {"rate": DROP, "rates": [10, -1]},
            "client[0].rates[1]: expected a number of calls/s from 0 to 1,000,000, got -1",
            id="negative",
        ),
        pytest.param(
            {"rate": DROP, "rates": [10, "fast"]},
            "client[0].rates[1]: expected a number of calls/s from 0 to 1,000,000, got 'fast'",
            id="not-a-number",
        ),
        pytest.param(
            {"rate": DROP, "rates": [0, 0]},
            "client[0].rates: has no positive rate between start and stop: the client would send nothing",
            id="all-zero",
        ),
        pytest.param(
            {"rate": DROP, "rates": [0, 0, 5], "stop": "2s"},
            "client[0].rates: has no positive rate between start and stop: the client would send nothing",
            id="only-after-stop",
        ),
        pytest.param(
            {"rate_step": "1s"}, "client[0].rate_step: only applies to a schedule (rates)", id="step-without-rates"
        ),
        pytest.param(
            {"rate": DROP, "rates": [1], "rate_step": "0s"},
            "client[0].rate_step: must be at least 1ms, got '0s'",
            id="step-zero",
        ),
    ],
)
def test_bad_schedules(bad: Callable[..., str], client: dict[str, Any], message: str) -> None:
    assert bad(client=client) == message


def test_inline_replica_tables_read_as_well(files: Files) -> None:
    scenario = files.load(
        service={
            "replica": [
                {"index": 1, "latency": {"dist": "lognormal", "median": "80ms", "sigma": 0.5}},
                {"index": 2, "error_rate": 0.05, "error_status": "INTERNAL"},
            ]
        }
    )
    (service,) = scenario.services
    assert service.behaviour(2).error_mix == ((StatusCode.INTERNAL, 0.05),)
    assert service.behaviour(1).latency.describe() == "lognormal median 80ms sigma 0.5"


# --------------------------------------------------------------------------- live


@pytest.mark.slow
def test_a_live_run_gives_each_replica_its_own_latency_and_status_mix(write_scenario: Callable[[str], Path]) -> None:
    """`meshsim run --live` means what the simulator means: the staged replicas read their
    [[service.replica]] too (real servers on loopback, two seconds of wall time)."""
    from meshsim.stage.runner import run_live

    text = SLOW_ONE.replace('duration = "4s"', 'duration = "2s"\ndrain = "1s"').replace("rate = 200", "rate = 60")
    text = text.replace("INTERNAL = 0.25, RESOURCE_EXHAUSTED = 0.25", "INTERNAL = 1.0")
    scenario = load_scenario(write_scenario(text))
    observer = Observer()
    calls: list[RequestFinished] = []
    observer.subscribe(RequestFinished, calls.append)
    run_live(scenario, handle_signals=False, observer=observer)
    # Live endpoints are addresses; the order of first use is enough to tell them apart here.
    by_replica: dict[str, list[RequestFinished]] = {}
    for call in calls:
        assert call.endpoint is not None
        by_replica.setdefault(call.endpoint, []).append(call)
    assert len(by_replica) == 3
    kinds = {}
    for found in by_replica.values():
        statuses = {c.status for c in found}
        durations = sorted(c.finished - c.started for c in found)
        median = durations[len(durations) // 2]
        if statuses == {StatusCode.INTERNAL}:
            kinds["failing"] = median
        elif median >= 0.1:
            kinds["slow"] = median
        else:
            kinds["fast"] = median
    assert set(kinds) == {"failing", "slow", "fast"}, kinds
    assert kinds["slow"] < 0.2 and kinds["fast"] < 0.05
