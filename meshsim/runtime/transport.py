"""The seam between the mesh logic and what actually carries calls (a simulator or grpc.aio).

A transport is one client's view of the network: the simulator uses that to cut a
single client off from some replicas, and a live backend keeps one channel per
replica per client, as gRPC does.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Protocol

from meshsim.core.calls import CallSpec
from meshsim.core.status import HealthStatus, StatusCode

# on_done(status, pushback_ms): pushback_ms is the server's grpc-retry-pushback-ms, or None.
OnDone = Callable[[StatusCode, int | None], None]
# on_health(status): a health probe's answer, or a status a Watch stream pushed.
OnHealth = Callable[[HealthStatus], None]
# on_answer(): the attempt's response headers (or first message) arrived: the call commits to it (A6).
OnAnswer = Callable[[], None]


class AttemptHandle(Protocol):
    def cancel(self, status: StatusCode) -> None:
        """End the attempt now with `status` (calls its on_done); nothing if it already ended."""
        ...


class Transport(Protocol):
    def start_call(
        self,
        endpoint: str,
        call: CallSpec,
        deadline_at: float | None,
        on_done: OnDone,
        on_answer: OnAnswer | None = None,
    ) -> AttemptHandle:
        """Start one attempt of `call` on `endpoint`; `on_done` is called exactly once, never from inside.

        `deadline_at` is absolute Trio time: the transport ends the attempt with
        DEADLINE_EXCEEDED then if it has not finished. `on_answer`, for a stream, is called
        when the attempt starts answering (a transport that commits streams its own way, as
        the live one does through its invocations, may ignore it).
        """
        ...

    async def check_health(self, endpoint: str, service: str) -> HealthStatus:
        """One grpc.health.v1 Check; the caller applies the timeout by cancelling."""
        ...


class EndpointGone(Exception):
    """The transport no longer reaches this endpoint (discovery removed it): the attempt fails
    UNAVAILABLE, as a call on a channel that has been shut down does."""


class WatchUnsupported(Exception):
    """The endpoint does not implement grpc.health.v1 Watch: poll with Check instead."""


class WatchingTransport(Transport, Protocol):
    """A transport that can also stream health (grpc.health.v1 Watch)."""

    def watch_health(self, endpoint: str, service: str) -> AsyncIterator[HealthStatus]:
        """Each serving status the endpoint reports, as it changes; ends (or raises) when the
        stream breaks; raises WatchUnsupported when the endpoint has no Watch."""
        ...
