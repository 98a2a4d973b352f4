"""The scenario model: what a scenario file describes, validated and frozen."""

from __future__ import annotations

import random
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


# A status mix: each status with the probability that a call fails with it (the sum at most 1).
ErrorMix = tuple[tuple[StatusCode, float], ...]


@attrs.frozen
class ReplicaOverride:
    """What one replica does differently from the rest of its service (`[[service.replica]]`); a
    field left None keeps the service's. Real replicas differ (one on a noisy host, one with a cold
    cache), and a recording replayed (docs/replay.md) gives each the latency and statuses it was
    measured with."""

    index: int
    latency: Distribution | None = None
    message_latency: Distribution | None = None
    errors: ErrorMix | None = None


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
    # Several statuses at once (`errors = { UNAVAILABLE = 0.02, INTERNAL = 0.01 }`); when given it
    # replaces error_rate and error_status, which are its one-status shorthand.
    errors: ErrorMix = ()
    overrides: tuple[ReplicaOverride, ...] = ()

    def replica_name(self, index: int) -> str:
        return f"{self.name}/{index}"

    @property
    def replica_names(self) -> tuple[str, ...]:
        return tuple(self.replica_name(i) for i in range(self.replicas))

    @property
    def error_mix(self) -> ErrorMix:
        if self.errors:
            return self.errors
        return ((self.error_status, self.error_rate),) if self.error_rate else ()

    def behaviour(self, index: int) -> ServiceConfig:
        """The service as replica `index` serves it: its own `[[service.replica]]` values in place
        of the service's (what the simulated replica and the live staged one both read)."""
        found = next((o for o in self.overrides if o.index == index), None)
        if found is None:
            return attrs.evolve(self, overrides=()) if self.overrides else self
        return attrs.evolve(
            self,
            latency=self.latency if found.latency is None else found.latency,
            message_latency=self.message_latency if found.message_latency is None else found.message_latency,
            errors=self.errors if found.errors is None else found.errors,
            error_rate=self.error_rate if found.errors is None else 0.0,
            overrides=(),
        )

    def injected_error(self, rng: random.Random) -> StatusCode | None:
        """The status of the service's own error model for one call, or None: one draw, made only
        when there is a model (so a service with one status draws exactly as `error_rate` did)."""
        mix = self.error_mix
        if not mix:
            return None
        point = rng.random()
        for status, rate in mix:
            if point < rate:
                return status
            point -= rate
        return None


@attrs.frozen
class KeyDistribution:
    """Hash keys a client's calls carry: `uniform` or `zipf` over `count` keys."""

    kind: str
    count: int
    exponent: float = 1.0


@attrs.frozen
class ClientConfig:
    """Open loop (`rate`, Poisson arrivals) or closed loop (`concurrency` workers).

    An open loop may follow a schedule (`rates`): a Poisson rate for each `rate_step` from
    `start`, none after the last, as a recording's arrivals are replayed. `rate` is then the
    schedule's mean over the client's active time, so whatever counts calls (the cost estimate,
    a live run's load check) counts them right.
    """

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
    rates: tuple[float, ...] = ()
    rate_step: float = 1.0


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
