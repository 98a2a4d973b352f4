"""The scenario model: what a scenario file describes, validated and frozen."""

from __future__ import annotations

from pathlib import Path

import attrs

from meshsim.core.calls import Pattern
from meshsim.core.distributions import Distribution
from meshsim.core.errors import ConfigError
from meshsim.core.faults import Effect
from meshsim.core.health import HealthConfig
from meshsim.core.outlier import OutlierConfig
from meshsim.core.pickers import BalancerConfig
from meshsim.core.policies import CallPolicies
from meshsim.core.status import StatusCode

SCHEMA = "meshsim/v1"


class ScenarioError(ConfigError):
    """A scenario file is invalid; the message names the file and the key path."""


@attrs.frozen
class ServiceConfig:
    name: str
    replicas: int
    latency: Distribution
    message_latency: Distribution
    error_rate: float = 0.0
    error_status: StatusCode = StatusCode.UNAVAILABLE
    capacity: int | None = None
    queue_limit: int | None = None
    weights: tuple[int, ...] = ()
    probe_latency: float = 0.001
    error_pushback_ms: int | None = None

    def replica_name(self, index: int) -> str:
        return f"{self.name}/{index}"

    @property
    def replica_names(self) -> tuple[str, ...]:
        return tuple(self.replica_name(i) for i in range(self.replicas))


@attrs.frozen
class KeyDistribution:
    """Hash keys a client's calls carry: `uniform` or `zipf` over `count` keys."""

    kind: str
    count: int
    exponent: float = 1.0


@attrs.frozen
class ClientConfig:
    """Open loop (`rate`, Poisson arrivals) or closed loop (`concurrency` workers)."""

    name: str
    target: str
    rate: float | None
    concurrency: int | None
    think_time: float = 0.0
    deadline: float | None = None
    start: float = 0.0
    stop: float | None = None
    mix: tuple[tuple[Pattern, float], ...] = ((Pattern.UNARY, 1.0),)
    messages: int = 10
    keys: KeyDistribution | None = None


@attrs.frozen
class FaultConfig:
    """One timed fault. `target` is a replica (`api/1`) or a whole service (`api`); `action` names its
    kind (core/faults/) and `effect` holds that kind's own parameters."""

    index: int
    at: float
    duration: float | None
    action: str
    target: str
    effect: Effect

    def describe(self) -> str:
        return self.effect.describe()


LATENCY_METRICS = {
    "latency.p50": 50.0,
    "latency.p90": 90.0,
    "latency.p99": 99.0,
    "latency.p999": 99.9,
}
# Counted over events in the window (by the time they happened) rather than over calls.
EVENT_METRICS = ("ejections", "breaker_opens", "budget_exhausted", "panic_seconds")
METRICS = (
    "success_rate",
    "requests",
    "errors",
    "key_affinity",
    *LATENCY_METRICS,
    "latency.mean",
    "latency.max",
    "attempts",
    "retries",
    "hedges",
    "amplification",
    *EVENT_METRICS,
)
OPERATORS = ("<", "<=", ">", ">=", "==", "!=")
SCOPES = ("run", "service", "replica", "client")


@attrs.frozen
class AssertionConfig:
    """`metric op value` over calls started in `window` (whole run when None), within `scope`."""

    name: str
    metric: str
    op: str
    value: float
    scope: str = "run"
    scope_name: str | None = None
    window: tuple[float, float] | None = None

    @property
    def scope_label(self) -> str:
        return self.scope if self.scope_name is None else f"{self.scope}:{self.scope_name}"


@attrs.frozen
class Scenario:
    path: Path
    name: str
    description: str
    seed: int
    duration: float
    drain: float
    services: tuple[ServiceConfig, ...]
    balancer: BalancerConfig
    health: HealthConfig
    outlier: OutlierConfig | None
    policies: CallPolicies
    clients: tuple[ClientConfig, ...]
    faults: tuple[FaultConfig, ...]
    assertions: tuple[AssertionConfig, ...]
    # Whose semantics fill in what the file leaves out where gRPC and Envoy differ (core/presets.py).
    preset: str = "grpc"

    def service(self, name: str) -> ServiceConfig:
        for service in self.services:
            if service.name == name:
                return service
        raise KeyError(name)

    def with_seed(self, seed: int) -> Scenario:
        return attrs.evolve(self, seed=seed)
