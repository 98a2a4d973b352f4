"""The health checker actor: probes one endpoint on an interval and reports to its balancer."""

from __future__ import annotations

import random

import trio

from meshsim.core.health import HealthConfig
from meshsim.core.status import HealthStatus
from meshsim.runtime.actor import Mailbox
from meshsim.runtime.balancer import BalancerMessage, HealthProbed
from meshsim.runtime.transport import Transport


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
        while True:
            await trio.sleep(self.next_wait())
            status = await self.probe()
            await self._balancer.send(HealthProbed(self.endpoint, status))
