"""Valid scenario files: the shipped ones load, and every key is read into the model with its default."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from meshsim.core.calls import Pattern
from meshsim.core.distributions import Constant, Empirical, Exponential, LogNormal, Normal, Uniform
from meshsim.core.faults.errors import Errors
from meshsim.core.faults.health import Health
from meshsim.core.faults.kill import Kill
from meshsim.core.faults.latency import Latency
from meshsim.core.faults.partition import Partition
from meshsim.core.health import HealthConfig
from meshsim.core.pickers import BalancerConfig
from meshsim.core.scenario import (
    AssertionConfig,
    ClientConfig,
    FaultConfig,
    KeyDistribution,
    ServiceConfig,
)
from meshsim.core.scenario_loader import load_scenario
from meshsim.core.status import HealthStatus, StatusCode
from tests.conftest import SCENARIOS
from tests.scenario_files import CHECK, DROP, KILL, Files, fault, scenario_text


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.stem)
def test_shipped_scenario_loads(path: Path) -> None:
    scenario = load_scenario(path)
    assert scenario.path == path
    assert scenario.name == path.stem
    assert scenario.services
    assert scenario.clients
    assert scenario.assertions


def test_there_are_shipped_scenarios() -> None:
    assert len(SCENARIOS) >= 8


def test_defaults(files: Files) -> None:
    path = files.write(scenario_text(), name="minimal.toml")
    scenario = load_scenario(path)
    assert scenario.path == path
    assert scenario.name == "minimal"
    assert scenario.description == ""
    assert scenario.seed == 1
    assert scenario.duration == 10.0
    assert scenario.drain == 10.0
    assert scenario.balancer == BalancerConfig(policy="round_robin", ring_size=1024, choices=2)
    assert scenario.health == HealthConfig(
        enabled=True,
        interval=1.0,
        timeout=0.5,
        unhealthy_threshold=3,
        healthy_threshold=2,
        jitter=0.0,
        service=None,
    )
    assert scenario.services == (
        ServiceConfig(
            name="api",
            replicas=3,
            latency=Constant(0.010),
            message_latency=Constant(0.0),
            error_rate=0.0,
            error_status=StatusCode.UNAVAILABLE,
            capacity=None,
            queue_limit=None,
            weights=(1, 1, 1),
            probe_latency=0.001,
        ),
    )
    assert scenario.clients == (
        ClientConfig(
            name="web",
            target="api",
            rate=100.0,
            concurrency=None,
            think_time=0.0,
            deadline=None,
            start=0.0,
            stop=None,
            mix=((Pattern.UNARY, 1.0),),
            messages=10,
            keys=None,
        ),
    )
    assert scenario.faults == ()
    assert scenario.assertions == ()


def test_defaults_of_optional_parts(files: Files) -> None:
    scenario = files.load(
        top={"balancer": {}, "health": {}},
        service={"replicas": DROP},
        faults=[KILL],
        asserts=[CHECK],
    )
    assert scenario.balancer == BalancerConfig()
    assert scenario.health == HealthConfig()
    assert scenario.services[0].replicas == 1
    assert scenario.services[0].weights == (1,)
    assert scenario.faults == (
        FaultConfig(index=0, at=1.0, duration=None, action="kill", target="api/0", effect=Kill()),
    )
    assert scenario.assertions == (
        AssertionConfig(
            name="success_rate >= 0.99",
            metric="success_rate",
            op=">=",
            value=0.99,
            scope="run",
            scope_name=None,
            window=None,
        ),
    )


def test_every_key_is_read_into_the_model(files: Files) -> None:
    services = [
        {
            "name": "api",
            "replicas": 2,
            "latency": {"dist": "uniform", "low": "5ms", "high": "25ms"},
            "message_latency": "2ms",
            "error_rate": 0.01,
            "error_status": "internal",
            "capacity": 8,
            "queue_limit": 0,
            "weights": [1, 0],
            "probe_latency": "3ms",
        },
        {"name": "db", "replicas": 3, "weight": 2, "latency": 0.5},
    ]
    clients = [
        {
            "name": "batch",
            "target": "db",
            "concurrency": 4,
            "think_time": "100ms",
            "deadline": "2s",
            "start": "1s",
            "stop": "9s",
            "patterns": {"unary": 0, "server_stream": 1, "bidi": 3},
            "messages": 5,
            "keys": {"dist": "zipf", "count": 100, "exponent": 1.2},
        },
        {"name": "web", "target": "api", "rate": 50.5, "keys": {"dist": "uniform", "count": 7}},
    ]
    scenario = files.load(
        top={
            "name": "everything",
            "description": "all of it",
            "seed": 0,
            "duration": 10,
            "drain": "0s",
            "service": services,
            "client": clients,
            "balancer": {"policy": "p2c", "ring_size": 64, "choices": 3},
            "health": {
                "enabled": False,
                "interval": "250ms",
                "timeout": "100ms",
                "unhealthy_threshold": 1,
                "healthy_threshold": 4,
                "jitter": 0.25,
                "service": "grpc.health.v1.Health",
            },
        },
        faults=[
            {"at": "0s", "for": "1s", "action": "latency", "target": "api", "add": "5ms", "multiply": 2},
            {"at": "2s", "action": "errors", "target": "db/2", "rate": 1, "status": 13},
            {"at": "3s", "action": "health", "target": "db/0", "status": "SERVICE_UNKNOWN"},
            {"at": "4s", "action": "partition", "target": "api/1", "client": "batch"},
            {"at": "5s", "action": "blackhole", "target": "db"},
            {"at": "6s", "action": "health", "target": "db/1"},
        ],
        asserts=[
            {"metric": "requests", "op": "!=", "value": 0, "scope": "replica:db/2", "window": ["1s", "10s"]},
            {"metric": "errors", "op": "<", "value": 3, "scope": "service:db", "name": "few errors"},
            {"metric": "key_affinity", "op": "==", "value": 1, "scope": "client:web", "window": [0, 2.5]},
        ],
    )
    assert (scenario.name, scenario.description, scenario.seed) == ("everything", "all of it", 0)
    assert (scenario.duration, scenario.drain) == (10.0, 0.0)
    assert scenario.balancer == BalancerConfig(policy="p2c", ring_size=64, choices=3)
    assert scenario.health == HealthConfig(
        enabled=False,
        interval=0.25,
        timeout=0.1,
        unhealthy_threshold=1,
        healthy_threshold=4,
        jitter=0.25,
        service="grpc.health.v1.Health",
    )

    api, db = scenario.services
    assert api == ServiceConfig(
        name="api",
        replicas=2,
        latency=Uniform(0.005, 0.025),
        message_latency=Constant(0.002),
        error_rate=0.01,
        error_status=StatusCode.INTERNAL,
        capacity=8,
        queue_limit=0,
        weights=(1, 0),
        probe_latency=0.003,
    )
    assert (db.latency, db.weights) == (Constant(0.5), (2, 2, 2))
    assert scenario.service("db") is db

    batch, web = scenario.clients
    assert batch == ClientConfig(
        name="batch",
        target="db",
        rate=None,
        concurrency=4,
        think_time=0.1,
        deadline=2.0,
        start=1.0,
        stop=9.0,
        mix=((Pattern.SERVER_STREAM, 1.0), (Pattern.BIDI, 3.0)),
        messages=5,
        keys=KeyDistribution("zipf", 100, 1.2),
    )
    assert (web.rate, web.concurrency, web.keys) == (50.5, None, KeyDistribution("uniform", 7, 1.0))

    latency, errors, health, partition, blackhole, default_health = scenario.faults
    assert (latency.index, latency.at, latency.duration, latency.action) == (0, 0.0, 1.0, "latency")
    assert (latency.target, latency.effect) == ("api", Latency(add=0.005, multiply=2.0))
    assert (errors.index, errors.action, errors.effect) == (1, "errors", Errors(1.0, StatusCode.INTERNAL))
    assert (health.action, health.effect) == ("health", Health(HealthStatus.SERVICE_UNKNOWN))
    assert (partition.action, partition.effect, partition.target) == ("partition", Partition("batch"), "api/1")
    assert (blackhole.action, blackhole.target, blackhole.duration) == ("blackhole", "db", None)
    assert default_health.effect == Health(HealthStatus.NOT_SERVING)

    replica, service, client = scenario.assertions
    assert (replica.scope, replica.scope_name, replica.window) == ("replica", "db/2", (1.0, 10.0))
    assert (replica.name, replica.scope_label, replica.value) == ("requests != 0 [replica:db/2]", "replica:db/2", 0.0)
    assert (service.name, service.scope_label) == ("few errors", "service:db")
    assert (client.scope, client.scope_name, client.window) == ("client", "web", (0.0, 2.5))


@pytest.mark.parametrize(
    ("latency", "expected"),
    [
        ("20ms", Constant(0.020)),
        (0.02, Constant(0.02)),
        ({"dist": "constant", "value": "7ms"}, Constant(0.007)),
        ({"dist": "uniform", "low": "5ms", "high": "5ms"}, Uniform(0.005, 0.005)),
        ({"dist": "exponential", "mean": "10ms"}, Exponential(0.010)),
        ({"dist": "exponential", "mean": 0}, Exponential(0.0)),
        ({"dist": "normal", "mean": "20ms", "stddev": "5ms"}, Normal(0.020, 0.005)),
        ({"dist": "lognormal", "median": "15ms", "sigma": 0}, LogNormal(0.015, 0.0)),
        (
            {"dist": "empirical", "bounds": ["1ms", "10ms", 0.1], "weights": [5, 0, 1.5]},
            Empirical((0.001, 0.010, 0.1), (5.0, 0.0, 1.5)),
        ),
    ],
)
def test_latency_distributions(files: Files, latency: Any, expected: object) -> None:
    assert files.load(service={"latency": latency}).services[0].latency == expected


@pytest.mark.parametrize(
    ("status", "code"), [("UNAVAILABLE", 14), ("internal", 13), (8, 8), ("4", 4), (" aborted ", 10)]
)
def test_error_status_spellings(files: Files, status: Any, code: int) -> None:
    assert files.load(service={"error_status": status}).services[0].error_status == StatusCode(code)


def test_duration_units(files: Files) -> None:
    scenario = files.load(
        top={"duration": "2h", "drain": "1.5s"},
        client={"deadline": "250ms", "start": "1m", "stop": "90m"},
        service={"probe_latency": "100us"},
    )
    assert scenario.duration == 7200.0
    assert scenario.drain == 1.5
    assert scenario.clients[0].deadline == pytest.approx(0.25)
    assert (scenario.clients[0].start, scenario.clients[0].stop) == (60.0, 5400.0)
    assert scenario.services[0].probe_latency == pytest.approx(1e-4)


def test_think_time_zero_is_allowed_on_an_open_loop_client(files: Files) -> None:
    assert files.load(client={"think_time": "0s"}).clients[0].think_time == 0.0


def test_latency_fault_with_multiply_only_and_zero_add(files: Files) -> None:
    (fault_config,) = files.load(faults=[fault(action="latency", add="0s", multiply=0.5)]).faults
    assert fault_config.effect == Latency(add=0.0, multiply=0.5)
    assert fault_config.describe() == "x0.5"
