"""The run recorder: an event-bus listener that keeps every call and attempt compactly.

A million calls fit in a few arrays of machine numbers; the report is computed from
them afterwards, so listening costs the call path an append, not an aggregation.
"""

from __future__ import annotations

from array import array
from collections.abc import Callable
from typing import Any, Protocol

import attrs

from meshsim.core.events import (
    AttemptFinished,
    BreakerChanged,
    EndpointEjected,
    EndpointReturned,
    FaultApplied,
    FaultCleared,
    HealthChanged,
    PanicChanged,
    RequestFinished,
    RetryRefused,
)
from meshsim.core.status import HealthStatus


class EventBus(Protocol):
    def subscribe(self, event_type: type[Any], listener: Callable[[Any], None]) -> None: ...


@attrs.frozen
class HealthTransition:
    at: float
    client: str
    endpoint: str
    healthy: bool
    last_probe: HealthStatus


@attrs.define
class FaultRecord:
    index: int
    action: str
    target: str
    detail: str
    applied_at: float
    cleared_at: float | None = None


@attrs.define
class EjectionRecord:
    at: float
    client: str
    endpoint: str
    detector: str
    duration: float
    returned_at: float | None = None


@attrs.define
class PanicPeriod:
    client: str
    service: str
    start: float
    end: float | None = None


class _Names:
    """Interns names as small integers, in first-seen order."""

    def __init__(self) -> None:
        self.names: list[str] = []
        self._ids: dict[str, int] = {}

    def id(self, name: str | None) -> int:
        found = self._ids.get(name)  # type: ignore[arg-type]
        if found is None:
            if name is None:
                return -1
            found = self._ids[name] = len(self.names)
            self.names.append(name)
        return found

    def find(self, name: str) -> int | None:
        return self._ids.get(name)


class RunRecorder:
    """Collects calls, attempts and the mesh's state changes in the order they happened."""

    def __init__(self) -> None:
        self.endpoints = _Names()
        self.clients = _Names()
        self.services = _Names()
        self.keys = _Names()
        # One entry per call.
        self.started = array("d")
        self.finished = array("d")
        self.status = array("b")
        self.endpoint = array("i")
        self.client = array("i")
        self.service = array("i")
        self.key = array("i")
        self.attempts = array("i")
        # One entry per attempt.
        self.a_started = array("d")
        self.a_finished = array("d")
        self.a_status = array("b")
        self.a_endpoint = array("i")
        self.a_client = array("i")
        self.a_service = array("i")
        self.a_kind = array("b")
        self.health: list[HealthTransition] = []
        self.faults: list[FaultRecord] = []
        self.ejections: list[EjectionRecord] = []
        self.breakers: list[BreakerChanged] = []
        self.panics: list[PanicPeriod] = []
        self.refused: list[RetryRefused] = []

    def on_request(self, event: RequestFinished) -> None:
        self.started.append(event.started)
        self.finished.append(event.finished)
        self.status.append(event.status)
        self.endpoint.append(self.endpoints.id(event.endpoint))
        self.client.append(self.clients.id(event.client))
        self.service.append(self.services.id(event.service))
        self.key.append(-1 if event.key is None else self.keys.id(event.key))
        self.attempts.append(event.attempts)

    def on_attempt(self, event: AttemptFinished) -> None:
        self.a_started.append(event.started)
        self.a_finished.append(event.finished)
        self.a_status.append(event.status)
        self.a_endpoint.append(self.endpoints.id(event.endpoint))
        self.a_client.append(self.clients.id(event.client))
        self.a_service.append(self.services.id(event.service))
        self.a_kind.append(event.kind)

    def on_health(self, event: HealthChanged) -> None:
        self.health.append(HealthTransition(event.at, event.client, event.endpoint, event.healthy, event.last_probe))

    def on_ejected(self, event: EndpointEjected) -> None:
        self.ejections.append(EjectionRecord(event.at, event.client, event.endpoint, event.detector, event.duration))

    def on_returned(self, event: EndpointReturned) -> None:
        for record in reversed(self.ejections):
            if record.client == event.client and record.endpoint == event.endpoint and record.returned_at is None:
                record.returned_at = event.at
                return

    def on_breaker(self, event: BreakerChanged) -> None:
        self.breakers.append(event)

    def on_panic(self, event: PanicChanged) -> None:
        if event.panic:
            self.panics.append(PanicPeriod(event.client, event.service, event.at))
            return
        for period in reversed(self.panics):
            if period.client == event.client and period.service == event.service and period.end is None:
                period.end = event.at
                return

    def on_refused(self, event: RetryRefused) -> None:
        self.refused.append(event)

    def on_fault_applied(self, event: FaultApplied) -> None:
        self.faults.append(FaultRecord(event.index, event.action, event.target, event.detail, event.at))

    def on_fault_cleared(self, event: FaultCleared) -> None:
        for record in reversed(self.faults):
            if record.index == event.index and record.cleared_at is None:
                record.cleared_at = event.at
                return

    def subscribe(self, bus: EventBus) -> None:
        """Listen on `bus` to every event the report needs."""
        subscribe = bus.subscribe
        subscribe(RequestFinished, self.on_request)
        subscribe(AttemptFinished, self.on_attempt)
        subscribe(HealthChanged, self.on_health)
        subscribe(EndpointEjected, self.on_ejected)
        subscribe(EndpointReturned, self.on_returned)
        subscribe(BreakerChanged, self.on_breaker)
        subscribe(PanicChanged, self.on_panic)
        subscribe(RetryRefused, self.on_refused)
        subscribe(FaultApplied, self.on_fault_applied)
        subscribe(FaultCleared, self.on_fault_cleared)

    def __len__(self) -> int:
        return len(self.started)
