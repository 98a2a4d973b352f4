"""One service's replicas as a live caller sees them: grpc.aio channels under the runtime's assembly.

GrpcClient has one; the proxy one per cluster. The caller's actors are built by
runtime.assembly, as the simulator builds them; what is live here is the transport
(a channel per replica, with TLS and reconnect settings), discovery's resolvers and
the certificate watcher.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import grpc
import trio

from meshsim.core.health import HealthConfig
from meshsim.core.outlier import OutlierConfig
from meshsim.core.pickers import BalancerConfig
from meshsim.core.policies import CallPolicies
from meshsim.live.bridge import HostHome
from meshsim.live.config import Discovery
from meshsim.live.discovery import resolver_for
from meshsim.live.security import CertificateWatcher, ClientCertificates
from meshsim.live.transport import LiveTransport
from meshsim.runtime.actor import Actor, Supervisor
from meshsim.runtime.assembly import CallerConfig, Replica, Streams, assemble, build_balancer
from meshsim.runtime.channel import MeshChannel
from meshsim.runtime.observer import Observer
from meshsim.runtime.timers import TimerQueue, Timers


def reconnect_options(health: HealthConfig) -> tuple[tuple[str, int], ...]:
    """gRPC's reconnect backoff grows to two minutes while a replica is down; a replica that comes
    back must be found within about a health interval, so a channel tries again at least that often."""
    interval_ms = max(100, int(health.interval * 1000))
    return (
        ("grpc.initial_reconnect_backoff_ms", min(1000, interval_ms)),
        ("grpc.max_reconnect_backoff_ms", interval_ms),
    )


class Upstream:
    def __init__(
        self,
        label: str,
        service: str,
        endpoints: Sequence[str],
        observer: Observer,
        *,
        balancer: BalancerConfig,
        health: HealthConfig,
        outlier: OutlierConfig | None = None,
        policies: CallPolicies | None = None,
        discovery: Discovery | None = None,
        certificates: ClientCertificates | None = None,
        channel_options: Sequence[tuple[str, Any]] = (),
        seed: object = None,
        host: HostHome | None = None,
        addresses: Mapping[str, str] | None = None,
        weights: Mapping[str, int] | None = None,
    ) -> None:
        """`seed` names the random streams (balancer, health jitter, retry backoff) of this upstream;
        with `host` the call path runs on the host loop (a proxy's), else on Trio. `addresses` maps
        endpoint names to where they listen (a live run names its replicas as the scenario does),
        `weights` gives each its weight (1 by default)."""
        self.label = label
        self.service = service
        self.observer = observer
        self.health = health
        self.outlier = outlier
        self.policies = policies or CallPolicies()
        self.discovery = discovery
        self.certificates = certificates
        self._host = host
        options = tuple({**dict(reconnect_options(health)), **dict(channel_options)}.items())

        where = dict(addresses or {})

        def connect(endpoint: str) -> grpc.aio.Channel:
            address = where.get(endpoint, endpoint)
            if certificates is None:
                return grpc.aio.insecure_channel(address, options=options)
            return grpc.aio.secure_channel(address, certificates.credentials(), options=options)

        self.transport = LiveTransport({e: connect(e) for e in endpoints}, connect, host, certificates is not None)
        self.config = CallerConfig(
            client=label,
            service=service,
            replicas=tuple(Replica(e, (weights or {}).get(e, 1)) for e in endpoints),
            balancer=balancer,
            health=health,
            outlier=outlier,
            policies=self.policies,
        )
        self.streams = Streams(seed if seed is not None else label, label, service)
        self.balancer = build_balancer(
            self.config, self.streams, observer, now=host.now if host is not None else trio.current_time
        )
        self.channel: MeshChannel | None = None

    async def start(self, supervisor: Supervisor, timers: TimerQueue | None = None) -> MeshChannel:
        """Start the actors (resolving once first, when discovered) and return the call path, on
        `timers` (a TimerQueue actor) or, with `host`, on the host loop's."""
        call_timers: Timers
        if self._host is not None:
            call_timers = self._host
        elif timers is not None:
            call_timers = timers
        else:
            raise ValueError("a call path on Trio needs a TimerQueue")
        discovery = self.discovery
        extra: list[Actor] = []
        if self.certificates is not None:
            # Rotated client files: new channels for new calls, the old ones drain.
            extra.append(CertificateWatcher(f"certificates:{self.label}", self.certificates, self.transport))
        caller = await assemble(
            self.config,
            self.transport,
            call_timers,
            self.observer,
            supervisor,
            self.streams,
            balancer=self.balancer,
            resolver=None if discovery is None else resolver_for(discovery),
            resolve_interval=30.0 if discovery is None else discovery.interval,
            connections=self.transport,
            extra_actors=extra,
        )
        self.channel = caller.channel
        return self.channel

    async def warm(self) -> None:
        """Return once every replica has answered a first check, as Envoy initialises a cluster
        before its listeners take calls (callers bound the wait: a replica may never answer)."""
        warmed = trio.Event()
        self.balancer.when_all_checked(warmed.set)
        await warmed.wait()

    def any_channel(self) -> grpc.aio.Channel | None:
        """A channel to a usable replica, for a caller's own questions (reflection)."""
        for endpoint in self.balancer.endpoints:
            if self.balancer.usable(endpoint):
                return self.transport.channels.get(endpoint.name)
        return None

    @property
    def serving(self) -> bool:
        return any(e.healthy for e in self.balancer.endpoints)
