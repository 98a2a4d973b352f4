"""Scenario validation of [[service]]: replicas, weights, errors, latency distributions; [balancer] and [health].

Every rejection names the file, the key path and the problem, in one line; each error test
writes a small valid scenario with one part made wrong (tests/scenario_files.py) and checks the
whole message after the `FILE: ` prefix, so a test states only what is wrong.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from meshsim.core.pickers import POLICIES
from tests.scenario_files import DROP, Files, Table, scenario_text

# --------------------------------------------------------------------------- services


@pytest.mark.parametrize(
    "top",
    [pytest.param({"service": DROP}, id="missing"), pytest.param({"service": []}, id="empty")],
)
def test_a_scenario_needs_a_service(bad: Callable[..., str], top: Table) -> None:
    assert bad(top=top) == "service: a scenario needs at least one [[service]]"


@pytest.mark.parametrize(
    ("value", "got"),
    [pytest.param("api", "a string", id="string"), pytest.param([1, 2], "an array", id="array-of-numbers")],
)
def test_service_must_be_an_array_of_tables(bad: Callable[..., str], value: Any, got: str) -> None:
    assert bad(top={"service": value}) == f"service: expected [[service]] tables, got {got}"


def test_duplicate_service_name(bad: Callable[..., str]) -> None:
    services = [{"name": "api"}, {"name": "db"}, {"name": "api"}]
    message = bad(top={"service": services}, client={"target": "api"})
    assert message == "service[2].name: duplicate name 'api'"


@pytest.mark.parametrize(
    ("service", "message"),
    [
        pytest.param({"name": DROP}, "service[0].name: is required", id="name-missing"),
        pytest.param({"name": "api/v2"}, "service[0].name: must not contain '/' or ':', got 'api/v2'", id="slash"),
        pytest.param({"name": "a:b"}, "service[0].name: must not contain '/' or ':', got 'a:b'", id="colon"),
        pytest.param({"replicas": "3"}, "service[0].replicas: expected an integer, got a string '3'", id="rep-str"),
        pytest.param({"replicas": 2.0}, "service[0].replicas: expected an integer, got a number 2.0", id="rep-flt"),
        pytest.param({"replicas": 0}, "service[0].replicas: must be at least 1, got 0", id="replicas-zero"),
        pytest.param({"error_rate": 1.5}, "service[0].error_rate: must be at most 1, got 1.5", id="rate-high"),
        pytest.param({"error_rate": -0.1}, "service[0].error_rate: must be at least 0, got -0.1", id="rate-low"),
        pytest.param(
            {"error_rate": True}, "service[0].error_rate: expected a number, got true or false True", id="rate-bool"
        ),
        pytest.param(
            {"error_rate": "5%"}, "service[0].error_rate: expected a number, got a string '5%'", id="rate-str"
        ),
        pytest.param(
            {"error_rate": float("nan")}, "service[0].error_rate: expected a number, got a number nan", id="nan"
        ),
        pytest.param(
            {"error_status": "BROKEN"},
            "service[0].error_status: expected a gRPC status code like \"UNAVAILABLE\", got 'BROKEN'",
            id="status-name",
        ),
        pytest.param(
            {"error_status": 99},
            'service[0].error_status: expected a gRPC status code like "UNAVAILABLE", got 99',
            id="status-number",
        ),
        pytest.param({"capacity": 0}, "service[0].capacity: must be at least 1, got 0", id="capacity-zero"),
        pytest.param(
            {"capacity": "64"}, "service[0].capacity: expected an integer, got a string '64'", id="capacity-str"
        ),
        pytest.param(
            {"queue_limit": 10},
            "service[0].queue_limit: needs capacity: without a capacity nothing ever queues",
            id="queue-without-capacity",
        ),
        pytest.param(
            {"capacity": 4, "queue_limit": -1}, "service[0].queue_limit: must be at least 0, got -1", id="queue-neg"
        ),
        pytest.param({"weights": [1, 2]}, "service[0].weights: has 2 entries for 3 replicas", id="weights-short"),
        pytest.param({"weights": [1, 2, 3, 4]}, "service[0].weights: has 4 entries for 3 replicas", id="weights-long"),
        pytest.param(
            {"weights": [1, -1, 1]},
            "service[0].weights: expected an array of integers from 0 to 1,000,000, got [1, -1, 1]",
            id="weights-negative",
        ),
        pytest.param(
            {"weights": [1, True, 1]},
            "service[0].weights: expected an array of integers from 0 to 1,000,000, got [1, True, 1]",
            id="weights-bool",
        ),
        pytest.param(
            {"weights": [1.5, 1, 1]},
            "service[0].weights: expected an array of integers from 0 to 1,000,000, got [1.5, 1, 1]",
            id="weights-float",
        ),
        pytest.param(
            {"weights": "1,2,3"},
            "service[0].weights: expected an array of integers from 0 to 1,000,000, got '1,2,3'",
            id="weights-string",
        ),
        pytest.param(
            {"weight": 2, "weights": [1, 1, 1]},
            "service[0].weight: give either weight or weights, not both",
            id="weight-and-weights",
        ),
        pytest.param({"weight": -1}, "service[0].weight: must be at least 0, got -1", id="weight-negative"),
        pytest.param(
            {"probe_latency": "quick"},
            "service[0].probe_latency: expected a duration like \"10s\", got 'quick'",
            id="probe-latency",
        ),
        pytest.param({"replcas": 3}, "service[0].replcas: unknown key (did you mean 'replicas'?)", id="unknown"),
        pytest.param({"capcity": 3}, "service[0].capcity: unknown key (did you mean 'capacity'?)", id="capcity"),
    ],
)
def test_bad_service(bad: Callable[..., str], service: Table, message: str) -> None:
    assert bad(service=service) == message


def test_second_service_is_named_by_index(bad: Callable[..., str]) -> None:
    services = [{"name": "api"}, {"name": "db", "replicas": -2}]
    message = bad(top={"service": services}, client={"target": "api"})
    assert message == "service[1].replicas: must be at least 1, got -2"


def test_weights_vs_replicas_uses_the_default_replica_count(bad: Callable[..., str]) -> None:
    assert bad(service={"replicas": DROP, "weights": [1, 1]}) == "service[0].weights: has 2 entries for 1 replicas"


def test_error_status_ok_is_rejected_like_an_injected_error(files: Files) -> None:
    """A service whose errors are status OK injects no errors at all (meshsim/sim/replica.py
    turns them into successes). The errors fault rejects OK; the service should too."""
    path = files.write(scenario_text(service={"error_rate": 0.5, "error_status": "OK"}))
    assert files.error_of(path).startswith("service[0].error_status: ")


# --------------------------------------------------------------------------- latency distributions


@pytest.mark.parametrize(
    ("latency", "message"),
    [
        pytest.param("ten", ": expected a duration like \"10s\", got 'ten'", id="string"),
        pytest.param(True, ': expected a duration like "10s", got True', id="bool"),
        pytest.param(["10ms"], ": expected a duration like \"10s\", got ['10ms']", id="array"),
        pytest.param({}, ".dist: is required", id="no-dist"),
        pytest.param(
            {"dist": "gamma"},
            ".dist: expected one of constant, uniform, exponential, normal, lognormal, empirical, got 'gamma'",
            id="unknown-dist",
        ),
        pytest.param({"dist": "constant"}, ".value: is required", id="constant-value"),
        pytest.param(
            {"dist": "constant", "value": "5 msec"},
            ".value: expected a duration like \"10s\", got '5 msec'",
            id="constant-value-bad",
        ),
        pytest.param({"dist": "uniform", "high": "5ms"}, ".low: is required", id="uniform-low"),
        pytest.param({"dist": "uniform", "low": "5ms"}, ".high: is required", id="uniform-high"),
        pytest.param(
            {"dist": "uniform", "low": "5ms", "high": "1ms"}, ".high: must not be below low (5ms)", id="high-below-low"
        ),
        pytest.param({"dist": "exponential"}, ".mean: is required", id="exponential-mean"),
        pytest.param(
            {"dist": "exponential", "mean": -1}, '.mean: expected a duration like "10s", got -1', id="mean-negative"
        ),
        pytest.param({"dist": "normal", "mean": "10ms"}, ".stddev: is required", id="normal-stddev"),
        pytest.param({"dist": "normal", "stddev": "1ms"}, ".mean: is required", id="normal-mean"),
        pytest.param(
            {"dist": "lognormal", "median": "0ms", "sigma": 0.5},
            ".median: must be greater than 0s, got '0ms'",
            id="lognormal-median-zero",
        ),
        pytest.param(
            {"dist": "lognormal", "median": 0, "sigma": 0.5},
            ".median: must be greater than 0s, got 0",
            id="lognormal-median-zero-number",
        ),
        pytest.param({"dist": "lognormal", "median": "20ms"}, ".sigma: is required", id="lognormal-sigma"),
        pytest.param(
            {"dist": "lognormal", "median": "20ms", "sigma": -0.1},
            ".sigma: must be at least 0, got -0.1",
            id="lognormal-sigma-negative",
        ),
        pytest.param(
            {"dist": "lognormal", "median": "20ms", "sigma": "0.4"},
            ".sigma: expected a number, got a string '0.4'",
            id="lognormal-sigma-string",
        ),
        pytest.param(
            {"dist": "constant", "value": "5ms", "sigma": 0.3}, ".sigma: unknown key", id="key-of-another-dist"
        ),
        pytest.param(
            {"dist": "lognormal", "median": "20ms", "sigma": 0.4, "sigmaa": 1},
            ".sigmaa: unknown key (did you mean 'sigma'?)",
            id="misspelt-key",
        ),
    ],
)
def test_bad_latency(bad: Callable[..., str], latency: Any, message: str) -> None:
    assert bad(service={"latency": latency}) == "service[0].latency" + message


@pytest.mark.parametrize(
    ("latency", "message"),
    [
        pytest.param({"dist": "empirical", "weights": [1]}, "bounds: is required", id="no-bounds"),
        pytest.param({"dist": "empirical", "bounds": ["1ms"]}, "weights: is required", id="no-weights"),
        pytest.param(
            {"dist": "empirical", "bounds": [], "weights": []},
            "bounds: expected an array of 1 to 10,000 durations (bucket upper edges)",
            id="bounds-empty",
        ),
        pytest.param(
            {"dist": "empirical", "bounds": "10ms", "weights": [1]},
            "bounds: expected an array of 1 to 10,000 durations (bucket upper edges)",
            id="bounds-not-array",
        ),
        pytest.param(
            {"dist": "empirical", "bounds": ["1ms", "x"], "weights": [1, 1]},
            "bounds[1]: expected a duration like \"10s\", got 'x'",
            id="bound-not-duration",
        ),
        pytest.param(
            {"dist": "empirical", "bounds": ["5ms", "5ms"], "weights": [1, 1]},
            "bounds: must be strictly increasing",
            id="bounds-equal",
        ),
        pytest.param(
            {"dist": "empirical", "bounds": ["5ms", "10ms", "8ms"], "weights": [1, 1, 1]},
            "bounds: must be strictly increasing",
            id="bounds-decreasing",
        ),
        pytest.param(
            {"dist": "empirical", "bounds": ["1ms", "2ms", "3ms"], "weights": [1, 1]},
            "weights: expected an array of 3 numbers, one per bucket",
            id="weights-length",
        ),
        pytest.param(
            {"dist": "empirical", "bounds": ["1ms"], "weights": 1},
            "weights: expected an array of 1 numbers, one per bucket",
            id="weights-not-array",
        ),
        pytest.param(
            {"dist": "empirical", "bounds": ["1ms", "2ms"], "weights": [0, 0]},
            "weights: must be non-negative numbers with a positive sum",
            id="weights-zero-sum",
        ),
        pytest.param(
            {"dist": "empirical", "bounds": ["1ms", "2ms"], "weights": [2, -1]},
            "weights: must be non-negative numbers with a positive sum",
            id="weights-negative",
        ),
        pytest.param(
            {"dist": "empirical", "bounds": ["1ms", "2ms"], "weights": [1, "1"]},
            "weights: must be non-negative numbers with a positive sum",
            id="weights-string",
        ),
        pytest.param(
            {"dist": "empirical", "bounds": ["1ms", "2ms"], "weights": [1, True]},
            "weights: must be non-negative numbers with a positive sum",
            id="weights-bool",
        ),
        pytest.param(
            {"dist": "empirical", "bounds": ["1ms"], "weights": [1], "buckets": 1},
            "buckets: unknown key",
            id="unknown-key",
        ),
    ],
)
def test_bad_empirical_latency(bad: Callable[..., str], latency: Table, message: str) -> None:
    assert bad(service={"latency": latency}) == f"service[0].latency.{message}"


def test_empirical_weights_must_be_finite(files: Files) -> None:
    """Every other number in a scenario must be finite (`_Table.number`); an infinite bucket
    weight is accepted and then samples wrongly: with weights [inf, 1] every draw lands in
    the second bucket, since the cumulative weights are [inf, inf]."""
    path = files.write(scenario_text(service={"latency": {"dist": "empirical", "bounds": [1, 2], "weights": []}}))
    path.write_text(path.read_text().replace("weights = []", "weights = [inf, 1]"), encoding="utf-8")
    assert files.error_of(path).startswith("service[0].latency.weights: ")


def test_message_latency_is_checked_like_latency(bad: Callable[..., str]) -> None:
    message = bad(service={"message_latency": {"dist": "uniform", "low": "2ms", "high": "1ms"}})
    assert message == "service[0].message_latency.high: must not be below low (2ms)"


# --------------------------------------------------------------------------- balancer and health


@pytest.mark.parametrize(
    ("balancer", "message"),
    [
        pytest.param(
            {"policy": "fastest"},
            f"balancer.policy: expected one of {', '.join(POLICIES)}, got 'fastest'",
            id="policy",
        ),
        pytest.param({"ring_size": 0}, "balancer.ring_size: must be at least 1, got 0", id="ring-size"),
        pytest.param({"choices": 0}, "balancer.choices: must be at least 1, got 0", id="choices"),
        pytest.param({"choices": 2.5}, "balancer.choices: expected an integer, got a number 2.5", id="choices-float"),
        pytest.param(
            {"hash_header": ":authority"},
            "balancer.hash_header: a pseudo-header (:authority) cannot be a hash key; name a request header",
            id="hash-header-pseudo",
        ),
        pytest.param(
            {"hash_header": "user-id-bin"},
            "balancer.hash_header: a binary header (-bin) cannot be a hash key, got 'user-id-bin'",
            id="hash-header-bin",
        ),
        pytest.param(
            {"hash_header": "User-Id"},
            "balancer.hash_header: expected a lowercase header name (a-z, 0-9, '-', '_', '.'), got 'User-Id'",
            id="hash-header-case",
        ),
        pytest.param(
            {"hash_header": "user id"},
            "balancer.hash_header: expected a lowercase header name (a-z, 0-9, '-', '_', '.'), got 'user id'",
            id="hash-header-space",
        ),
        pytest.param(
            {"hash_header": 3},
            "balancer.hash_header: expected a non-empty string, got an integer 3",
            id="hash-header-type",
        ),
        pytest.param({"polcy": "p2c"}, "balancer.polcy: unknown key (did you mean 'policy'?)", id="unknown"),
        pytest.param("p2c", "balancer: expected a table, got a string 'p2c'", id="not-a-table"),
    ],
)
def test_bad_balancer(bad: Callable[..., str], balancer: Any, message: str) -> None:
    assert bad(top={"balancer": balancer}) == message


def test_a_scenario_takes_hash_header_and_its_keys_still_come_from_the_clients(files: Files) -> None:
    """The key is the proxy's to read from a header; simulated calls carry `[[client]] keys`."""
    scenario = files.load(top={"balancer": {"policy": "consistent_hash", "hash_header": "x-user-id"}})
    assert scenario.balancer.hash_header == "x-user-id"


@pytest.mark.parametrize(
    ("health", "message"),
    [
        pytest.param({"enabled": "yes"}, "health.enabled: expected true or false, got a string 'yes'", id="enabled"),
        pytest.param({"enabled": 1}, "health.enabled: expected true or false, got an integer 1", id="enabled-int"),
        pytest.param({"interval": "0s"}, "health.interval: must be at least 1ms, got '0s'", id="interval-zero"),
        pytest.param(
            {"interval": "often"}, "health.interval: expected a duration like \"10s\", got 'often'", id="interval"
        ),
        pytest.param({"timeout": 0}, "health.timeout: must be greater than 0s, got 0", id="timeout-zero"),
        pytest.param(
            {"unhealthy_threshold": 0}, "health.unhealthy_threshold: must be at least 1, got 0", id="unhealthy"
        ),
        pytest.param(
            {"healthy_threshold": "2"},
            "health.healthy_threshold: expected an integer, got a string '2'",
            id="healthy-string",
        ),
        pytest.param({"jitter": 1.5}, "health.jitter: must be at most 1, got 1.5", id="jitter-high"),
        pytest.param({"jitter": -0.5}, "health.jitter: must be at least 0, got -0.5", id="jitter-low"),
        pytest.param({"service": ""}, "health.service: expected a non-empty string, got a string ''", id="service"),
        pytest.param(
            {"unhealthy_treshold": 2},
            "health.unhealthy_treshold: unknown key (did you mean 'unhealthy_threshold'?)",
            id="treshold",
        ),
        pytest.param([1], "health: expected a table, got an array [1]", id="not-a-table"),
    ],
)
def test_bad_health(bad: Callable[..., str], health: Any, message: str) -> None:
    assert bad(top={"health": health}) == message
