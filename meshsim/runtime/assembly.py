"""One caller's actors, built one way for both backends: balancer, outlier sweeper, health
checkers or membership, and the `MeshChannel` with its policies.

The simulator and the live runtime give the same `CallerConfig`, a transport, timers
and a supervisor; what they build around it (simulated replicas, grpc.aio channels,
a proxy's listener) is theirs. Every random draw comes from a stream named for its
caller and purpose (`Streams`), the same names in both backends, so that turning one
feature on does not shift another's draws.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import cast

import attrs
import trio

from meshsim.core.endpoint import Endpoint
from meshsim.core.health import HealthConfig
from meshsim.core.outlier import OutlierConfig
from meshsim.core.pickers import BalancerConfig
from meshsim.core.policies import CallPolicies
from meshsim.runtime.actor import Actor, Supervisor
from meshsim.runtime.balancer import Balancer, OutlierSweeper
from meshsim.runtime.channel import MeshChannel
from meshsim.runtime.health_checker import HealthChecker
from meshsim.runtime.membership import Connections, Membership, Resolver
from meshsim.runtime.observer import Observer
from meshsim.runtime.timed_health import TimedHealthChecker, TimedHealthTransport, offers_timed_health
from meshsim.runtime.timers import Timers
from meshsim.runtime.transport import Transport

# Balancers of more endpoints than this publish health verdicts once per instant (see assemble).
BATCHED_PUBLISH_ABOVE = 32


@attrs.frozen
class Replica:
    """An endpoint as a caller is configured with it: its address (or simulated name) and weight."""

    name: str
    weight: int = 1


@attrs.frozen
class CallerConfig:
    """Everything that decides how one client balances, checks and calls one service."""

    client: str
    service: str
    replicas: tuple[Replica, ...]
    balancer: BalancerConfig = attrs.field(factory=BalancerConfig)
    health: HealthConfig = attrs.field(factory=HealthConfig)
    outlier: OutlierConfig | None = None
    policies: CallPolicies = attrs.field(factory=CallPolicies)

    @property
    def probed_service(self) -> str:
        """The service name health probes ask about."""
        return self.health.service if self.health.service is not None else self.service


class Streams:
    """The random streams of one caller, one per purpose, each seeded from its name.

    A stream is `random.Random(f"{seed}/{client}/{service}/{purpose}")` (text seeds are
    hashed with SHA-512, so PYTHONHASHSEED does not reach them). Purposes: `picker`,
    `outlier`, `backoff`, `health/{endpoint}`, `arrivals`, `mix`, `keys`, `chaos`.
    """

    def __init__(self, seed: object, client: str, service: str) -> None:
        self._prefix = f"{seed}/{client}/{service}"

    def __call__(self, purpose: str) -> random.Random:
        return random.Random(f"{self._prefix}/{purpose}")


@attrs.define(eq=False)
class Caller:
    """The assembled actors of one caller (its checkers are the supervisor's to run)."""

    config: CallerConfig
    balancer: Balancer
    channel: MeshChannel
    streams: Streams


def build_balancer(
    config: CallerConfig,
    streams: Streams,
    observer: Observer,
    now: Callable[[], float] = trio.current_time,
) -> Balancer:
    endpoints = [Endpoint(r.name, weight=r.weight, index=i) for i, r in enumerate(config.replicas)]
    return Balancer(
        f"balancer:{config.client}",
        config.client,
        config.service,
        config.balancer,
        config.health,
        endpoints,
        streams("picker"),
        observer,
        config.outlier,
        now=now,
        outlier_rng=streams("outlier"),
    )


async def assemble(
    config: CallerConfig,
    transport: Transport,
    timers: Timers,
    observer: Observer,
    supervisor: Supervisor,
    streams: Streams,
    *,
    balancer: Balancer | None = None,
    resolver: Resolver | None = None,
    resolve_interval: float = 30.0,
    connections: Connections | None = None,
    extra_actors: Sequence[Actor] = (),
) -> Caller:
    """Build and start one caller's actors; the channel is ready for calls when this returns.

    With a `resolver` (discovery) a membership actor keeps the balancer's endpoints and
    their health checkers in step with it, opening and closing `connections`; without,
    the configured replicas are checked from the start.
    """
    if balancer is None:
        balancer = build_balancer(config, streams, observer)
    health = config.health

    # A transport that answers probes through callbacks (the simulator's) gets checkers made of
    # timers. A large balancer's verdicts then publish once per instant, however many endpoints
    # changed: a picker per verdict costs O(endpoints²) when all pass their first check together.
    # A small one publishes per verdict, as before, which keeps the picker's draws (round robin's
    # start) where the shipped scenarios have them.
    timed = offers_timed_health(transport)
    if timed and health.enabled and len(balancer.endpoints) > BATCHED_PUBLISH_ABOVE:
        balancer.publish_later(lambda publish: timers.call_at(timers.now(), publish))

    def checker(endpoint: str) -> HealthChecker | TimedHealthChecker:
        name = f"health:{config.client}:{endpoint}"
        rng = streams(f"health/{endpoint}")
        if timed:
            probes = cast(TimedHealthTransport, transport)
            return TimedHealthChecker(name, endpoint, config.probed_service, health, probes, balancer, timers, rng)
        return HealthChecker(name, endpoint, config.probed_service, health, transport, balancer.mailbox, rng)

    if resolver is not None:
        assert connections is not None, "discovery opens and closes connections"
        membership = Membership(
            f"membership:{config.client}",
            resolver,
            resolve_interval,
            balancer,
            connections,
            observer,
            checker if health.enabled else None,
        )
        await membership.prime()
        supervisor.start(balancer)
        supervisor.start(membership)
    else:
        supervisor.start(balancer)
        if health.enabled:
            for endpoint in balancer.endpoints:
                made = checker(endpoint.name)
                if isinstance(made, TimedHealthChecker):
                    made.start()  # no task: its steps are timers
                else:
                    supervisor.start(made)
    if config.outlier is not None:
        supervisor.start(OutlierSweeper(f"outliers:{config.client}", config.outlier.interval, balancer.mailbox))
    for actor in extra_actors:
        supervisor.start(actor)
    channel = MeshChannel(
        config.client, config.service, balancer, transport, observer, timers, config.policies, streams("backoff")
    )
    return Caller(config, balancer, channel, streams)
