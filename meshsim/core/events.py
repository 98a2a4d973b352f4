"""Typed events that cross the event bus: whatever listens (report, metrics, logs) sees these."""

from __future__ import annotations

import attrs

from meshsim.core.calls import Pattern
from meshsim.core.status import HealthStatus, StatusCode


@attrs.frozen
class RequestStarted:
    """A call began (emitted only when someone listens: the call path checks first)."""

    client: str
    service: str
    pattern: Pattern
    started: float


@attrs.frozen
class RequestFinished:
    """A call ended. Every call that starts ends in exactly one of these."""

    client: str
    service: str
    endpoint: str | None
    pattern: Pattern
    status: StatusCode
    started: float
    finished: float
    key: str | None = None


@attrs.frozen
class HealthChanged:
    """A client's view of an endpoint flipped between healthy and unhealthy."""

    at: float
    client: str
    endpoint: str
    healthy: bool
    last_probe: HealthStatus


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


Event = RequestStarted | RequestFinished | HealthChanged | FaultApplied | FaultCleared
