"""The one seam between grpc's statuses and meshsim's: every conversion either way is here.

The mesh logic only ever sees meshsim's `StatusCode` and `HealthStatus`; grpc.aio sees
`grpc.StatusCode` and grpc.health.v1's serving states. The proxy converts on every
call, so each conversion is a dict lookup, not an enum constructor.
"""

from __future__ import annotations

from typing import Any

import grpc
from grpc_health.v1 import health_pb2

from meshsim.core.status import HealthStatus, StatusCode

# The server's retry pushback (A6): milliseconds to wait before the next attempt; negative: do not retry.
PUSHBACK_KEY = "grpc-retry-pushback-ms"

# grpc.StatusCode's values are (number, "name") pairs; meshsim's StatusCode has the same numbers.
_FROM_GRPC: dict[grpc.StatusCode, StatusCode] = {code: StatusCode(code.value[0]) for code in grpc.StatusCode}
_TO_GRPC: dict[StatusCode, grpc.StatusCode] = {status: code for code, status in _FROM_GRPC.items()}

_SERVING: int = health_pb2.HealthCheckResponse.SERVING
_NOT_SERVING: int = health_pb2.HealthCheckResponse.NOT_SERVING
# A serving state grpc.health.v1 may add later counts as NOT_SERVING, as UNKNOWN does.
_HEALTH_FROM_GRPC: dict[int, HealthStatus] = {
    _SERVING: HealthStatus.SERVING,
    health_pb2.HealthCheckResponse.SERVICE_UNKNOWN: HealthStatus.SERVICE_UNKNOWN,
}


def from_grpc(code: grpc.StatusCode) -> StatusCode:
    """meshsim's status for grpc's."""
    return _FROM_GRPC[code]


def to_grpc(status: StatusCode) -> grpc.StatusCode:
    """grpc's status for meshsim's (to abort a servicer's call with it, say)."""
    return _TO_GRPC[status]


def status_of(error: grpc.aio.AioRpcError) -> StatusCode:
    """The status a failed grpc.aio call ended with, in meshsim's terms."""
    return _FROM_GRPC[error.code()]


def attempt_status(code: grpc.StatusCode, details: str | None = "") -> StatusCode:
    """The status of an attempt that ended with `code` before it answered, meshsim not having
    cancelled it. CANCELLED with no details of a servicer's own (grpc's bare "CANCELLED") means the
    replica reset the stream: a server that is stopping, or killed, cancels the calls it has not
    started. That fails the attempt UNAVAILABLE, as the connection's end does for the calls it
    carried and as Envoy reports an upstream reset, so that retries carry it; gRPC's own client
    reports it CANCELLED, which nothing retries. A servicer's own CANCELLED, with its words,
    stays CANCELLED."""
    status = _FROM_GRPC[code]
    if status is StatusCode.CANCELLED and (details or "CANCELLED") == "CANCELLED":
        return StatusCode.UNAVAILABLE
    return status


def pushback_of(error: grpc.aio.AioRpcError) -> int | None:
    """The server's retry pushback in a failed call's trailers (`pushback_in`)."""
    return pushback_in(error.trailing_metadata())


def pushback_in(trailing: Any) -> int | None:
    """The retry pushback in trailing metadata, in milliseconds: None when there is none, -1 when it
    cannot be read (A6: an unparsable pushback means do not retry)."""
    for key, value in trailing or ():
        if key == PUSHBACK_KEY:
            try:
                return int(value)
            except ValueError:
                return -1
    return None


def health_from_grpc(serving_status: int) -> HealthStatus:
    """meshsim's health for a grpc.health.v1 `HealthCheckResponse.status`: SERVING, SERVICE_UNKNOWN,
    and NOT_SERVING for the rest (NOT_SERVING, UNKNOWN, anything newer)."""
    return _HEALTH_FROM_GRPC.get(serving_status, HealthStatus.NOT_SERVING)


_HEALTH_TO_GRPC: dict[HealthStatus, int] = {
    HealthStatus.SERVING: _SERVING,
    HealthStatus.NOT_SERVING: _NOT_SERVING,
    HealthStatus.SERVICE_UNKNOWN: health_pb2.HealthCheckResponse.SERVICE_UNKNOWN,
}


def health_to_grpc(status: HealthStatus) -> int:
    """The grpc.health.v1 serving state a server reports for meshsim's health (a health fault's)."""
    return _HEALTH_TO_GRPC.get(status, _NOT_SERVING)


def serving_to_grpc(serving: bool) -> int:
    """The grpc.health.v1 serving state a server reports: SERVING or NOT_SERVING."""
    return _SERVING if serving else _NOT_SERVING
