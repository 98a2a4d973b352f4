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
        # The names' id tables, read directly on the per-call path (a method call per name cost more).
        self._endpoint_ids = self.endpoints._ids
        self._client_ids = self.clients._ids
        self._service_ids = self.services._ids
        self.health: list[HealthTransition] = []
        self.faults: list[FaultRecord] = []
        self.ejections: list[EjectionRecord] = []
        self.breakers: list[BreakerChanged] = []
        self.panics: list[PanicPeriod] = []
        self.refused: list[RetryRefused] = []

    def on_request(self, event: RequestFinished) -> None:
        self.request_ended(
            event.client,
            event.service,
            event.endpoint,
            event.status,
            event.started,
            event.finished,
            event.key,
            event.attempts,
        )

    def request_ended(
        self,
        client: str,
        service: str,
        endpoint: str | None,
        status: int,
        started: float,
        finished: float,
        key: str | None,
        attempts: int,
    ) -> None:
        """A RequestFinished's fields, without the event (`Observer.direct`)."""
        self.started.append(started)
        self.finished.append(finished)
        self.status.append(status)
        found = self._endpoint_ids.get(endpoint)  # type: ignore[arg-type]
        self.endpoint.append(found if found is not None else self.endpoints.id(endpoint))
        found = self._client_ids.get(client)
        self.client.append(found if found is not None else self.clients.id(client))
        found = self._service_ids.get(service)
        self.service.append(found if found is not None else self.services.id(service))
        self.key.append(-1 if key is None else self.keys.id(key))
        self.attempts.append(attempts)

    def on_attempt(self, event: AttemptFinished) -> None:
        self.attempt_ended(
            event.client, event.service, event.endpoint, event.kind, event.status, event.started, event.finished
        )

    def attempt_ended(
        self,
        client: str,
        service: str,
        endpoint: str | None,
        kind: int,
        status: int,
        started: float,
        finished: float,
    ) -> None:
        """An AttemptFinished's fields, without the event (`Observer.direct`)."""
        self.a_started.append(started)
        self.a_finished.append(finished)
        self.a_status.append(status)
        found = self._endpoint_ids.get(endpoint)  # type: ignore[arg-type]
        self.a_endpoint.append(found if found is not None else self.endpoints.id(endpoint))
        found = self._client_ids.get(client)
        self.a_client.append(found if found is not None else self.clients.id(client))
        found = self._service_ids.get(service)
        self.a_service.append(found if found is not None else self.services.id(service))
        self.a_kind.append(kind)

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
        direct = getattr(bus, "subscribe_direct", None)
        if direct is not None:
            direct(RequestFinished, self.on_request, self.request_ended)
            direct(AttemptFinished, self.on_attempt, self.attempt_ended)
        else:
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
