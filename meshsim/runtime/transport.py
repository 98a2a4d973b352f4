"""The seam between the mesh logic and what actually carries calls (a simulator or grpc.aio).

A transport is one client's view of the network: the simulator uses that to cut a
single client off from some replicas, and a live backend keeps one channel per
replica per client, as gRPC does.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from meshsim.core.calls import CallSpec
from meshsim.core.status import HealthStatus, StatusCode

OnDone = Callable[[StatusCode], None]


class Transport(Protocol):
    def start_call(self, endpoint: str, call: CallSpec, deadline_at: float | None, on_done: OnDone) -> None:
        """Start `call` on `endpoint`; `on_done(status)` is called exactly once, later, never from inside.

        `deadline_at` is absolute Trio time: the transport ends the call with
        DEADLINE_EXCEEDED then if it has not finished.
        """
        ...

    async def check_health(self, endpoint: str, service: str) -> HealthStatus:
        """One grpc.health.v1 Check; the caller applies the timeout by cancelling."""
        ...
