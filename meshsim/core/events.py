"""Typed events that cross the event bus: whatever listens (report, metrics, logs) sees these."""

from __future__ import annotations

import enum

import attrs

from meshsim.core.calls import Pattern
from meshsim.core.status import HealthStatus, StatusCode


class AttemptKind(enum.IntEnum):
    FIRST = 0
    RETRY = 1
    HEDGE = 2


@attrs.frozen
class RequestStarted:
    """A call began (emitted only when someone listens: the call path checks first)."""

    client: str
    service: str
    pattern: Pattern
    started: float


@attrs.frozen
class AttemptFinished:
    """One attempt of a call ended: what a replica (or, with no endpoint, nobody) saw."""

    client: str
    service: str
    endpoint: str | None
    kind: AttemptKind
    status: StatusCode
    started: float
    finished: float


@attrs.frozen
class RequestFinished:
    """A call ended. Every call that starts ends in exactly one of these.

    `endpoint` is the replica of the attempt that decided the call (None when no
    attempt reached one); `attempts` counts every attempt sent, retries and hedges
    included (0 when a client-side limit or breaker refused the call).
    """

    client: str
    service: str
    endpoint: str | None
    pattern: Pattern
    status: StatusCode
    started: float
    finished: float
    key: str | None = None
    attempts: int = 1
    method: str = ""


@attrs.frozen
class HealthChanged:
    """A client's view of an endpoint flipped between healthy and unhealthy."""

    at: float
    client: str
    endpoint: str
    healthy: bool
    last_probe: HealthStatus


@attrs.frozen
class EndpointEjected:
    at: float
    client: str
    endpoint: str
    detector: str
    duration: float


@attrs.frozen
class EndpointReturned:
    at: float
    client: str
    endpoint: str


@attrs.frozen
class PanicChanged:
    """Fewer endpoints than the panic threshold are usable: the balancer uses them all."""

    at: float
    client: str
    service: str
    panic: bool


@attrs.frozen
class BreakerChanged:
    """A circuit breaker moved; `scope` is "replica" (target is a replica) or "service"."""

    at: float
    client: str
    scope: str
    target: str
    state: str


@attrs.frozen
class RetryRefused:
    """A retry or hedge was not sent because the token bucket ("throttle") or the budget said no."""

    at: float
    client: str
    service: str
    reason: str


@attrs.frozen
class FaultApplied:
    at: float
    index: int
    action: str
    target: str
    detail: str


@attrs.frozen
class FaultCleared:
    at: float
    index: int
    action: str
    target: str


Event = (
    RequestStarted
    | AttemptFinished
    | RequestFinished
    | HealthChanged
    | EndpointEjected
    | EndpointReturned
    | PanicChanged
    | BreakerChanged
    | RetryRefused
    | FaultApplied
    | FaultCleared
)


@attrs.frozen
class MembershipChanged:
    """Discovery changed the set of endpoints a balancer spreads calls over."""

    at: float
    client: str
    added: tuple[str, ...]
    removed: tuple[str, ...]


@attrs.frozen
class DiscoveryFailed:
    """A resolution failed (or found nothing); the balancer keeps the endpoints it had."""

    at: float
    client: str
    source: str
    error: str
