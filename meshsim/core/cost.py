"""What a scenario will cost to simulate, worked out before it runs.

Each key has a range, but a run's cost is a product of several (a rate times a
duration, a closed loop's workers over the time a call takes, replicas times health
checks per second), so a file of sensible-looking values can still ask for billions
of calls. The estimate is the expected number of calls the clients start and of
periodic events (health probes, outlier sweeps); a run over the limits is refused
before it starts, naming the key that makes it so, and a large one is announced.
"""

from __future__ import annotations

import math

import attrs

from meshsim.core.scenario import ClientConfig, Scenario, ScenarioError

# Measured on one core of the development machine: about 45,000 simulated calls a second and
# 15,000 health probes (each an actor's round trip). The limits are a few minutes of either.
MAX_CALLS = 20_000_000
MAX_PERIODIC = 5_000_000
# From here on, `meshsim run` says what it is about to do.
LARGE_CALLS = 1_000_000
LARGE_PERIODIC = 300_000


@attrs.frozen
class RunCost:
    calls: float  # calls the clients are expected to start
    periodic: float  # health probes and outlier sweeps

    @property
    def large(self) -> bool:
        return self.calls >= LARGE_CALLS or self.periodic >= LARGE_PERIODIC

    def describe(self) -> str:
        return f"about {count(self.calls)} calls and {count(self.periodic)} health probes and outlier sweeps"


def client_calls(scenario: Scenario, client: ClientConfig) -> float:
    """The calls `client` is expected to start: arrivals over its active time (open loop), or its
    workers over the time one call and its think time take (closed loop)."""
    active = (client.stop if client.stop is not None else scenario.duration) - client.start
    if client.rate is not None:
        return client.rate * active
    assert client.concurrency is not None
    service = next(s for s in scenario.services if s.name == client.target)
    messages = service.message_latency.expected * client.messages
    took = service.latency.expected + messages
    if client.deadline is not None:
        took = min(took, client.deadline)
    cycle = client.think_time + took
    if cycle <= 0:
        return math.inf
    return client.concurrency * active / cycle


def estimate(scenario: Scenario) -> RunCost:
    calls = sum(client_calls(scenario, client) for client in scenario.clients)
    periodic = 0.0
    health, outlier = scenario.health, scenario.outlier
    for client in scenario.clients:
        replicas = next(s.replicas for s in scenario.services if s.name == client.target)
        if health.enabled:
            periodic += replicas * scenario.duration / health.interval
        if outlier is not None:
            periodic += scenario.duration / outlier.interval
    return RunCost(calls, periodic)


def check(scenario: Scenario) -> RunCost:
    """The scenario's cost, or ScenarioError naming what makes it too large to run."""
    for index, client in enumerate(scenario.clients):
        calls = client_calls(scenario, client)
        if calls == math.inf:
            _fail(
                scenario,
                f"client[{index}]",
                "a closed loop whose calls take no time and no think_time never lets time pass: "
                "give the service a latency or the client a think_time",
            )
        if calls > MAX_CALLS:
            how = "rate x active time" if client.rate is not None else "workers x active time / time per call"
            _fail(
                scenario,
                f"client[{index}]",
                f"would start about {count(calls)} calls ({how}); a run simulates at most {count(MAX_CALLS)}",
            )
    cost = estimate(scenario)
    if cost.calls > MAX_CALLS:
        _fail(
            scenario,
            "client",
            f"the clients would start about {count(cost.calls)} calls; a run simulates at most {count(MAX_CALLS)}",
        )
    if cost.periodic > MAX_PERIODIC:
        _fail(
            scenario,
            "health.interval" if scenario.health.enabled else "outlier_detection.interval",
            f"about {count(cost.periodic)} health probes and outlier sweeps (replicas x clients x duration / "
            f"interval); a run simulates at most {count(MAX_PERIODIC)}",
        )
    return cost


def _fail(scenario: Scenario, key: str, message: str) -> None:
    raise ScenarioError(f"{scenario.path}: {key}: {message}")


def count(number: float) -> str:
    """A count as people read it: 12,000, or 6.5e+13 when it is absurd."""
    if number >= 1e12:
        return f"{number:.1e}"
    return f"{round(number):,}"
