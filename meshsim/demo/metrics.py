"""Prometheus metrics of demo replicas (`meshsim serve --metrics`): every call a servicer answers.

    grpc_requests_total{replica, service, method, code}       calls answered, by the status given
    grpc_request_duration_seconds{replica, service, method}   how long the servicer took
    grpc_endpoint_health{replica, service}                    1 while the replica reports SERVING

A server has no event bus: a grpc.aio interceptor wraps each method's handler, for all
four call patterns, and the health gauge follows what the replica reports.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import grpc
import prometheus_client

from meshsim.core.metric_names import ENDPOINT_HEALTH, REPLICA, SERVICE
from meshsim.live.around_calls import around
from meshsim.live.metrics import request_metrics


class ServerMetrics:
    """One registry for the replicas of a process; each replica adds `interceptor(replica)` to its server."""

    def __init__(self, registry: prometheus_client.CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else prometheus_client.CollectorRegistry()
        self._requests, self._duration = request_metrics(
            self.registry,
            REPLICA,
            "Calls this replica answered, by the status it gave.",
            "Seconds this replica took to answer a call.",
        )
        self._health = prometheus_client.Gauge(
            ENDPOINT_HEALTH,
            "1 while the replica reports SERVING for the service, else 0.",
            [REPLICA, SERVICE],
            registry=self.registry,
        )

    def interceptor(self) -> Counting:
        """For a replica's server; set its `replica` label once the port is known."""
        return Counting(self)

    def set_health(self, replica: str, service: str, serving: bool) -> None:
        self._health.labels(replica, service).set(1.0 if serving else 0.0)

    def exposition(self) -> bytes:
        return bytes(prometheus_client.generate_latest(self.registry))

    def record(self, replica: str, method: str, code: grpc.StatusCode, seconds: float) -> None:
        service = method[1:].split("/", 1)[0]
        self._requests.labels(replica, service, method, code.name).inc()
        self._duration.labels(replica, service, method).observe(seconds)


class Counting(grpc.aio.ServerInterceptor):
    def __init__(self, metrics: ServerMetrics) -> None:
        self._metrics = metrics
        self.replica = ""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = await continuation(details)
        if handler is None:
            return None  # an unknown method: grpc answers UNIMPLEMENTED and no servicer runs
        method = details.method

        def begin(context: grpc.aio.ServicerContext) -> Callable[[BaseException | None], None]:
            started = time.monotonic()

            def end(error: BaseException | None) -> None:
                self._metrics.record(self.replica, method, _code(context, error), time.monotonic() - started)

            return end

        return around(handler, begin)


def _code(context: grpc.aio.ServicerContext, error: BaseException | None) -> grpc.StatusCode:
    """The status the call ended with: what the servicer set or aborted with, else what the error means."""
    code = context.code()
    if code is not None and code != grpc.StatusCode.OK:
        return code
    if error is None:
        return grpc.StatusCode.OK
    if isinstance(error, asyncio.CancelledError):
        return grpc.StatusCode.CANCELLED
    return grpc.StatusCode.UNKNOWN
