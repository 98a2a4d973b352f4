"""One service's replicas as a live caller sees them: channels, balancer, health, discovery and call path.

GrpcClient has one; the proxy one per cluster. Everything here is the runtime's actors
over the live transport; this module only wires them for one service.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

import grpc
import trio

from meshsim.core.endpoint import Endpoint
from meshsim.core.health import HealthConfig
from meshsim.core.outlier import OutlierConfig
from meshsim.core.pickers import BalancerConfig
from meshsim.core.policies import CallPolicies
from meshsim.live.bridge import HostHome
from meshsim.live.config import Discovery
from meshsim.live.discovery import resolver_for
from meshsim.live.security import CertificateWatcher, ClientCertificates
from meshsim.live.transport import LiveTransport
from meshsim.runtime.actor import Supervisor
from meshsim.runtime.balancer import Balancer, OutlierSweeper
from meshsim.runtime.channel import MeshChannel
from meshsim.runtime.health_checker import HealthChecker
from meshsim.runtime.membership import Membership
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
    ) -> None:
        """`seed` names the random streams (balancer, health jitter, retry backoff) of this upstream;
        with `host` the call path runs on the host loop (a proxy's), else on Trio."""
        self.label = label
        self.service = service
        self.observer = observer
        self.health = health
        self.outlier = outlier
        self.policies = policies or CallPolicies()
        self.discovery = discovery
        self.certificates = certificates
        self._seed = seed if seed is not None else label
        self._host = host
        options = tuple({**dict(reconnect_options(health)), **dict(channel_options)}.items())

        def connect(endpoint: str) -> grpc.aio.Channel:
            if certificates is None:
                return grpc.aio.insecure_channel(endpoint, options=options)
            return grpc.aio.secure_channel(endpoint, certificates.credentials(), options=options)

        self.transport = LiveTransport({e: connect(e) for e in endpoints}, connect, host, certificates is not None)
        self.balancer = Balancer(
            f"balancer:{label}",
            label,
            service,
            balancer,
            health,
            [Endpoint(e, index=i) for i, e in enumerate(endpoints)],
            self._random("balancer"),
            observer,
            outlier,
            now=host.now if host is not None else trio.current_time,
        )
        self.channel: MeshChannel | None = None

    def _random(self, purpose: str) -> random.Random:
        return random.Random(f"{self._seed}/{purpose}")

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
        health = self.health
        service = health.service if health.service is not None else self.service
        balancer = self.balancer

        def checker(endpoint: str) -> HealthChecker:
            name = f"health:{self.label}:{endpoint}"
            return HealthChecker(name, endpoint, service, health, self.transport, balancer.mailbox, self._random(name))

        if self.discovery is not None:
            # The membership actor starts (and stops) the health checkers as endpoints come and go.
            membership = Membership(
                f"membership:{self.label}",
                resolver_for(self.discovery),
                self.discovery.interval,
                balancer,
                self.transport,
                self.observer,
                checker if health.enabled else None,
            )
            await membership.prime()
            supervisor.start(balancer)
            supervisor.start(membership)
        else:
            supervisor.start(balancer)
            if health.enabled:
                for endpoint in balancer.endpoints:
                    supervisor.start(checker(endpoint.name))
        if self.outlier is not None:
            supervisor.start(OutlierSweeper(f"outliers:{self.label}", self.outlier.interval, balancer.mailbox))
        if self.certificates is not None:
            # Rotated client files: new channels for new calls, the old ones drain.
            supervisor.start(CertificateWatcher(f"certificates:{self.label}", self.certificates, self.transport))
        self.channel = MeshChannel(
            self.label,
            self.service,
            balancer,
            self.transport,
            self.observer,
            call_timers,
            self.policies,
            self._random("channel"),
        )
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
