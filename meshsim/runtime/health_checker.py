"""The health checker actor: watches or probes one endpoint and reports to its balancer.

It prefers grpc.health.v1 Watch where the transport offers it: the endpoint pushes
each change, which counts at once (as in gRPC's client health checking). A broken
stream makes the endpoint unhealthy until a new Watch answers; an endpoint without
Watch is polled with Check every `interval`, with the thresholds.
"""

from __future__ import annotations

import contextlib
import random

import trio

from meshsim.core.health import HealthConfig
from meshsim.core.status import HealthStatus
from meshsim.runtime.actor import Mailbox
from meshsim.runtime.balancer import BalancerMessage, HealthProbed, HealthReported
from meshsim.runtime.transport import Transport, WatchUnsupported


class HealthChecker:
    def __init__(
        self,
        name: str,
        endpoint: str,
        service: str,
        config: HealthConfig,
        transport: Transport,
        balancer: Mailbox[BalancerMessage],
        rng: random.Random,
    ) -> None:
        self.name = name
        self.endpoint = endpoint
        self.service = service
        self.config = config
        self._transport = transport
        self._balancer = balancer
        self._rng = rng

    def next_wait(self) -> float:
        jitter = self.config.jitter
        return self.config.interval * (1.0 + jitter * self._rng.random()) if jitter else self.config.interval

    async def probe(self) -> HealthStatus:
        # A probe that does not answer within the timeout is a failure, as in grpc_health_probe.
        with trio.move_on_after(self.config.timeout):
            return await self._transport.check_health(self.endpoint, self.service)
        return HealthStatus.TIMEOUT

    async def run(self) -> None:
        watch = getattr(self._transport, "watch_health", None)
        if self.config.watch and watch is not None:
            with contextlib.suppress(WatchUnsupported):
                await self._watch()
        await self._poll()

    async def _poll(self) -> None:
        while True:
            await trio.sleep(self.next_wait())
            status = await self.probe()
            await self._balancer.send(HealthProbed(self.endpoint, status))

    async def _watch(self) -> None:
        """Follow Watch streams until the endpoint says it has none (WatchUnsupported)."""
        watch = self._transport.watch_health  # type: ignore[attr-defined]
        while True:
            # Closed here, not by the garbage collector, when the checker is cancelled mid-stream.
            async with contextlib.aclosing(watch(self.endpoint, self.service)) as statuses:
                async for status in statuses:
                    await self._balancer.send(HealthReported(self.endpoint, status))
            # The stream ended or broke: unhealthy until a new one says otherwise.
            await self._balancer.send(HealthReported(self.endpoint, HealthStatus.UNREACHABLE))
            await trio.sleep(self.next_wait())
