"""The health checker actor: watches or probes one endpoint and reports to its balancer.

It prefers grpc.health.v1 Watch where the transport offers it: the endpoint pushes
each change, which counts at once (as in gRPC's client health checking). A broken
stream makes the endpoint unhealthy until a new Watch answers, and a stream silent for
an interval is backed by a Check (a hung endpoint answers neither). An endpoint
without Watch is polled with Check every `interval`, with the thresholds.
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
        self._heard = 0.0  # when the Watch stream last pushed a status

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
        # An endpoint out until its first check is checked at once (Envoy's first check runs as the
        # cluster starts, and gRPC asks as its subchannel connects); one in from the start waits.
        if self.config.initial_healthy:
            await trio.sleep(self.next_wait())
        while True:
            status = await self.probe()
            await self._balancer.send(HealthProbed(self.endpoint, status))
            await trio.sleep(self.next_wait())

    async def _watch(self) -> None:
        """Follow Watch streams until the endpoint says it has none (WatchUnsupported)."""
        while True:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._probe_while_silent)
                supported = await self._follow_watch()
                nursery.cancel_scope.cancel()
            if not supported:
                return
            # The stream ended or broke: unhealthy until a new one says otherwise.
            await self._balancer.send(HealthReported(self.endpoint, HealthStatus.UNREACHABLE))
            await trio.sleep(self.next_wait())

    async def _follow_watch(self) -> bool:
        """Report what one Watch stream pushes until it ends; False when the endpoint has no Watch."""
        watch = self._transport.watch_health  # type: ignore[attr-defined]
        try:
            # Closed here, not by the garbage collector, when the checker is cancelled mid-stream.
            async with contextlib.aclosing(watch(self.endpoint, self.service)) as statuses:
                async for status in statuses:
                    self._heard = trio.current_time()
                    await self._balancer.send(HealthReported(self.endpoint, status))
        except WatchUnsupported:
            return False
        return True

    async def _probe_while_silent(self) -> None:
        """A Watch pushes only changes, and a hung endpoint keeps its connection and its stream open
        while saying nothing. So a stream that has pushed nothing for an interval (its first answer
        included) is backed by a Check, with the timeout and the thresholds, as Envoy's checker
        probes: a hung endpoint is taken out as a polled one is."""
        self._heard = trio.current_time()
        while True:
            await trio.sleep(self.next_wait())
            heard = self._heard
            if trio.current_time() - heard < self.config.interval:
                continue
            status = await self.probe()
            if self._heard != heard:
                continue  # the Watch pushed a status while the probe was out: the push is newer
            await self._balancer.send(HealthProbed(self.endpoint, status))
