"""The run recorder: an event-bus listener that keeps every call's outcome compactly.

A million calls fit in a few arrays of machine numbers; the report is computed from
them afterwards, so listening costs the call path an append, not an aggregation.
"""

from __future__ import annotations

from array import array

import attrs

from meshsim.core.events import FaultApplied, FaultCleared, HealthChanged, RequestFinished
from meshsim.core.status import HealthStatus


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


class RunRecorder:
    """Collects calls, health transitions and faults in the order they happened."""

    def __init__(self) -> None:
        self.started = array("d")
        self.finished = array("d")
        self.status = array("b")
        self.endpoint = array("i")
        self.client = array("i")
        self.service = array("i")
        self.key = array("i")
        self.key_names: list[str] = []
        self._key_ids: dict[str, int] = {}
        self.endpoint_names: list[str] = []
        self.client_names: list[str] = []
        self.service_names: list[str] = []
        self._endpoint_ids: dict[str | None, int] = {None: -1}
        self._client_ids: dict[str, int] = {}
        self._service_ids: dict[str, int] = {}
        self.health: list[HealthTransition] = []
        self.faults: list[FaultRecord] = []

    def _id(self, ids: dict[str, int], names: list[str], name: str) -> int:
        found = ids.get(name)
        if found is None:
            found = ids[name] = len(names)
            names.append(name)
        return found

    def on_request(self, event: RequestFinished) -> None:
        self.started.append(event.started)
        self.finished.append(event.finished)
        self.status.append(event.status)
        endpoint = self._endpoint_ids.get(event.endpoint)
        if endpoint is None:
            endpoint = self._endpoint_ids[event.endpoint] = len(self.endpoint_names)
            self.endpoint_names.append(event.endpoint)  # type: ignore[arg-type]
        self.endpoint.append(endpoint)
        self.client.append(self._id(self._client_ids, self.client_names, event.client))
        self.service.append(self._id(self._service_ids, self.service_names, event.service))
        key = event.key
        self.key.append(-1 if key is None else self._id(self._key_ids, self.key_names, key))

    def on_health(self, event: HealthChanged) -> None:
        self.health.append(HealthTransition(event.at, event.client, event.endpoint, event.healthy, event.last_probe))

    def on_fault_applied(self, event: FaultApplied) -> None:
        self.faults.append(FaultRecord(event.index, event.action, event.target, event.detail, event.at))

    def on_fault_cleared(self, event: FaultCleared) -> None:
        for record in reversed(self.faults):
            if record.index == event.index and record.cleared_at is None:
                record.cleared_at = event.at
                return

    def __len__(self) -> int:
        return len(self.started)
