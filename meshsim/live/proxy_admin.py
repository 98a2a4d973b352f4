"""What the proxy's admin endpoint shows: its clusters as its balancers see them, and its settings.

`/clusters` follows Envoy's: for every endpoint of every cluster, whether health checks
pass, whether outlier detection has ejected it, its breaker's state, the calls in
flight to it, its weight and whether its connection is up.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

import attrs
import grpc
import prometheus_client

from meshsim.core.chaos import FaultBoard

if TYPE_CHECKING:
    from meshsim.live.config import ProxyConfig
    from meshsim.live.upstream import Upstream


class Proxied(Protocol):
    """What the admin endpoint reads of the proxy it serves (live/proxy.py's Proxy)."""

    config: ProxyConfig
    listening: bool

    @property
    def upstreams(self) -> Sequence[Upstream]: ...


class ProxyAdmin:
    """The admin source of one proxy (live/admin.py's AdminSource)."""

    def __init__(self, proxy: Proxied, registry: prometheus_client.CollectorRegistry, board: FaultBoard) -> None:
        self._proxy = proxy
        self.registry = registry
        self.board = board

    def ready(self) -> bool:
        """Listening, and every service has a replica in rotation (Envoy: clusters initialised)."""
        proxy = self._proxy
        return proxy.listening and all(upstream.serving for upstream in proxy.upstreams)

    def clusters(self) -> dict[str, Any]:
        ready = grpc.ChannelConnectivity.READY
        clusters = []
        for upstream in self._proxy.upstreams:
            balancer, channel = upstream.balancer, upstream.channel
            outlier = balancer.outlier
            endpoints = []
            for endpoint in balancer.endpoints:
                connection = upstream.transport.channels.get(endpoint.name)
                breaker = None if channel is None else channel.breaker_state(endpoint.name)
                endpoints.append(
                    {
                        "endpoint": endpoint.name,
                        "healthy": endpoint.healthy,
                        "ejected": outlier is not None and outlier.is_ejected(endpoint.name),
                        "in_rotation": balancer.usable(endpoint),
                        "breaker": None if breaker is None else breaker.name,
                        "in_flight": endpoint.in_flight,
                        "weight": endpoint.weight,
                        "connected": connection is not None and connection.get_state(try_to_connect=False) == ready,
                    }
                )
            clusters.append(
                {
                    "name": upstream.label,
                    "service": upstream.service,
                    "policy": balancer.config.policy,
                    "panic": balancer.panic,
                    "endpoints": endpoints,
                }
            )
        return {"clusters": clusters}

    def effective_config(self) -> dict[str, Any]:
        """The config the proxy runs with, as attrs sees it: files are named, none is read out."""
        settings: dict[str, Any] = _plain(attrs.asdict(self._proxy.config, recurse=True))
        return settings


def _plain(value: Any) -> Any:
    """JSON's types: tuples as lists, enums and paths as their names."""
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_plain(item) for item in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    name = getattr(value, "name", None)
    return name if isinstance(name, str) else str(value)
