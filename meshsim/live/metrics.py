"""Prometheus metrics for live mode: a listener on the event bus, and a scrape endpoint.

    grpc_requests_total{client, service, method, code}        calls that ended (counter)
    grpc_request_duration_seconds{client, service, method}    how long they took (histogram)
    grpc_endpoint_health{client, service, endpoint}           1 while the balancer counts it healthy
    grpc_active_connections{client, service, endpoint}        1 while its channel is connected (READY)
    grpc_client_attempts_total{client, service, endpoint, code}      attempts, by the replica they went to
    grpc_client_attempt_duration_seconds{client, service, endpoint}  how long each took (histogram)

The two request metrics follow RequestFinished events, as the report does in the
simulator: every call that ends, ends in exactly one. The two gauges are read from
the balancers and channels when Prometheus scrapes, so they are never stale and need
no events of their own. A scrape reads them from the admin endpoint (live/admin.py).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import grpc
import hypercorn.trio
import prometheus_client
import trio
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from meshsim.core.events import AttemptFinished, RequestFinished
from meshsim.core.metric_names import (
    ACTIVE_CONNECTIONS,
    ATTEMPT_DURATION,
    ATTEMPTS_TOTAL,
    CLIENT,
    CODE,
    ENDPOINT,
    ENDPOINT_HEALTH,
    METHOD,
    REQUEST_DURATION,
    REQUESTS_TOTAL,
    SERVICE,
)
from meshsim.live.admin import http_config
from meshsim.live.upstream import Upstream
from meshsim.runtime.observer import Observer

# Seconds: from a loopback call (sub-millisecond) to a call held up by retries and deadlines.
DURATION_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


def request_metrics(
    registry: prometheus_client.CollectorRegistry, caller: str, calls_help: str, duration_help: str
) -> tuple[prometheus_client.Counter, prometheus_client.Histogram]:
    """grpc_requests_total and grpc_request_duration_seconds, labelled by `caller` (client or replica),
    service, method (and code): the same two series for a caller's view and a server's.

    The help texts are whole sentences from each side: pieced together from fragments
    they read "Calls calls made".
    """
    requests = prometheus_client.Counter(
        REQUESTS_TOTAL,
        calls_help,
        [caller, SERVICE, METHOD, CODE],
        registry=registry,
    )
    duration = prometheus_client.Histogram(
        REQUEST_DURATION,
        duration_help,
        [caller, SERVICE, METHOD],
        buckets=DURATION_BUCKETS,
        registry=registry,
    )
    return requests, duration


class MeshMetrics:
    """The metrics of one process (a proxy, or a program using GrpcClient), in their own registry."""

    def __init__(self, observer: Observer, registry: prometheus_client.CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else prometheus_client.CollectorRegistry()
        self._requests, self._duration = request_metrics(
            self.registry,
            CLIENT,
            "Calls made, by the status they ended with.",
            "Seconds from a call's start to its end, every attempt included.",
        )
        # Per replica, so that a replica's share of the calls, its errors and its latency show
        # (gRFC A66's attempt metrics): the request series count a call once, wherever it went.
        self._attempts = prometheus_client.Counter(
            ATTEMPTS_TOTAL,
            "Attempts sent to each replica (retries and hedges included), by the status they ended with.",
            [CLIENT, SERVICE, ENDPOINT, CODE],
            registry=self.registry,
        )
        self._attempt_duration = prometheus_client.Histogram(
            ATTEMPT_DURATION,
            "Seconds from an attempt's start to its end, by the replica it went to.",
            [CLIENT, SERVICE, ENDPOINT],
            buckets=DURATION_BUCKETS,
            registry=self.registry,
        )
        self._upstreams = _Upstreams()
        self.registry.register(self._upstreams)
        observer.subscribe(RequestFinished, self._finished)
        observer.subscribe(AttemptFinished, self._attempted)

    def watch(self, upstreams: Sequence[Upstream]) -> None:
        """Report these upstreams' endpoints in the health and connection gauges."""
        self._upstreams.upstreams.extend(upstreams)

    def _finished(self, event: RequestFinished) -> None:
        method = event.method or event.pattern.value
        self._requests.labels(event.client, event.service, method, event.status.name).inc()
        self._duration.labels(event.client, event.service, method).observe(max(0.0, event.finished - event.started))

    def _attempted(self, event: AttemptFinished) -> None:
        if event.endpoint is None:
            return  # refused before it reached a replica: the request series count it
        self._attempts.labels(event.client, event.service, event.endpoint, event.status.name).inc()
        self._attempt_duration.labels(event.client, event.service, event.endpoint).observe(
            max(0.0, event.finished - event.started)
        )

    def exposition(self) -> bytes:
        """The metrics in Prometheus' text format, as a scrape gets them."""
        return bytes(prometheus_client.generate_latest(self.registry))

    async def serve(self, listen: str, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Serve /metrics alone on `listen` ("host:port", port 0 for any) until cancelled, for a program
        using GrpcClient; started with the address it got (`await nursery.start(metrics.serve, ...)`)."""
        config, address = http_config(listen)
        task_status.started(address)
        await hypercorn.trio.serve(prometheus_client.make_asgi_app(self.registry), config)


class _Upstreams(Collector):
    """The gauges, read from the balancers and channels at scrape time."""

    def __init__(self) -> None:
        self.upstreams: list[Upstream] = []

    def collect(self) -> Iterator[GaugeMetricFamily]:
        labels = [CLIENT, SERVICE, ENDPOINT]
        health = GaugeMetricFamily(
            ENDPOINT_HEALTH, "1 while the balancer counts the endpoint healthy, else 0.", labels=labels
        )
        connections = GaugeMetricFamily(
            ACTIVE_CONNECTIONS,
            "1 while the channel to the endpoint is connected (READY), else 0.",
            labels=labels,
        )
        ready = grpc.ChannelConnectivity.READY
        for upstream in self.upstreams:
            balancer = upstream.balancer
            for endpoint in balancer.endpoints:
                names = [balancer.client, balancer.service, endpoint.name]
                health.add_metric(names, 1.0 if endpoint.healthy else 0.0)
                channel = upstream.transport.channels.get(endpoint.name)
                connected = channel is not None and channel.get_state(try_to_connect=False) == ready
                connections.add_metric(names, 1.0 if connected else 0.0)
        yield health
        yield connections
