"""The simulated network: every replica, the partitions between clients and replicas, and each client's view."""

from __future__ import annotations

import math
import random
from collections.abc import AsyncIterator, Callable

import trio
import trio.lowlevel

from meshsim.core.calls import CallSpec
from meshsim.core.scenario import Scenario
from meshsim.core.status import HealthStatus, StatusCode
from meshsim.runtime.timers import Cancellable, TimerQueue
from meshsim.runtime.transport import OnAnswer, OnDone, OnHealth
from meshsim.sim.replica import SimCall, SimReplica


def actor_rng(seed: int, name: str) -> random.Random:
    """One generator per actor, seeded from text (hashed with SHA-512, so PYTHONHASHSEED does not matter)."""
    return random.Random(f"{seed}/{name}")


class SimNetwork:
    def __init__(self, scenario: Scenario, timers: TimerQueue) -> None:
        self.timers = timers
        self.replicas: dict[str, SimReplica] = {}
        for service in scenario.services:
            for index, name in enumerate(service.replica_names):
                self.replicas[name] = SimReplica(
                    name, service, index, timers, actor_rng(scenario.seed, f"replica:{name}")
                )

    def targets(self, target: str) -> list[SimReplica]:
        """A replica name gives that replica; a service name gives all of its replicas, in order."""
        if target in self.replicas:
            return [self.replicas[target]]
        return [r for r in self.replicas.values() if r.service.name == target]

    def is_cut(self, client: str, replica: str) -> bool:
        cut_from = self.replicas[replica].cut_from
        return bool(cut_from) and client in cut_from

    def view(self, client: str) -> SimTransport:
        return SimTransport(self, client)

    def abort_all(self, status: StatusCode) -> None:
        for replica in self.replicas.values():
            replica.abort(status)


class SimTransport:
    """One client's view of the simulated network (the Transport the runtime sees)."""

    def __init__(self, network: SimNetwork, client: str) -> None:
        self._network = network
        self._client = client

    def start_call(
        self,
        endpoint: str,
        call: CallSpec,
        deadline_at: float | None,
        on_done: OnDone,
        on_answer: OnAnswer | None = None,
    ) -> SimCall:
        replica = self._network.replicas[endpoint]
        if replica.cut_from and self._client in replica.cut_from:
            # A partition refuses the connection: the call fails fast, as against a dead host.
            return replica.refuse(on_done, StatusCode.UNAVAILABLE)
        return replica.start_call(call, deadline_at, on_done, on_answer)

    def probe(self, endpoint: str, service: str, on_status: OnHealth, timeout: float) -> Cancellable:
        """check_health as a timer (runtime.timed_health): the answer, or TIMEOUT after `timeout`,
        from the completion queue."""
        if self._network.is_cut(self._client, endpoint):
            return self._network.timers.call_soon(on_status, HealthStatus.UNREACHABLE)
        return self._network.replicas[endpoint].probe(service, on_status, timeout)

    def watch(self, endpoint: str, service: str, on_status: OnHealth, on_end: Callable[[], None]) -> Cancellable:
        """watch_health as callbacks on the completion queue: the same stream, no task."""
        stream = _WatchStream(self, self._network.replicas[endpoint], service, on_status, on_end)
        stream.step()
        return stream

    def reaches(self, endpoint: str) -> bool:
        return not self._network.is_cut(self._client, endpoint)

    async def check_health(self, endpoint: str, service: str) -> HealthStatus:
        if self._network.is_cut(self._client, endpoint):
            await trio.lowlevel.checkpoint()
            return HealthStatus.UNREACHABLE
        return await self._network.replicas[endpoint].check_health(service)

    async def watch_health(self, endpoint: str, service: str) -> AsyncIterator[HealthStatus]:
        """grpc.health.v1 Watch as a simulated replica streams it: its status after a probe's time,
        then again whenever a fault changes it. The stream breaks (ends) when the replica dies or
        this client is cut from it; a blackholed replica keeps it open and says nothing."""
        replica = self._network.replicas[endpoint]
        last = None
        while True:
            changed = replica.changed
            if replica.down or self._network.is_cut(self._client, endpoint):
                await trio.lowlevel.checkpoint()
                return
            if replica.blackholed:
                await changed.wait()  # hung: the stream stays open and says nothing until it lifts
                continue
            status = await replica.check_health(service)
            if replica.down or self._network.is_cut(self._client, endpoint):
                return  # it died (or was cut off) while answering: the stream broke
            if status is not last:
                yield status
                last = status
            await changed.wait()


class _WatchStream:
    """One Watch stream of SimTransport.watch_health, as a state machine on the completion queue.

    Between answers it waits for the replica to change; a change while it is answering makes
    it answer again at once, as the task version's captured `changed` event does.
    """

    def __init__(
        self,
        transport: SimTransport,
        replica: SimReplica,
        service: str,
        on_status: OnHealth,
        on_end: Callable[[], None],
    ) -> None:
        self._transport = transport
        self._timers = transport._network.timers
        self._replica = replica
        self._service = service
        self._on_status = on_status
        self._on_end = on_end
        self._last: HealthStatus | None = None
        self._probe: Cancellable | None = None
        self._changed = False  # a fault began or ended while the stream was answering
        self._waiting = False
        self._closed = False
        replica.watch_changes(self._change)

    def step(self) -> None:
        replica = self._replica
        if replica.down or not self._transport.reaches(replica.name):
            self._end(soon=True)
            return
        if replica.blackholed:
            self._waiting = True  # hung: open and silent until the blackhole lifts
            return
        self._changed = False
        self._probe = replica.probe(self._service, self._answered, math.inf)

    def _answered(self, status: HealthStatus) -> None:
        self._probe = None
        replica = self._replica
        if replica.down or not self._transport.reaches(replica.name):
            self._end(soon=False)  # it died (or was cut off) while answering: the stream broke
            return
        if status is not self._last:
            self._last = status
            self._on_status(status)
            if self._closed:
                return
        if self._changed:
            self.step()
        else:
            self._waiting = True

    def _change(self) -> None:
        # Called from inside whatever changed the replica: act from the completion queue instead.
        if self._waiting:
            self._waiting = False
            self._timers.call_soon(self._resume)
        else:
            self._changed = True

    def _resume(self) -> None:
        if not self._closed:
            self.step()

    def _end(self, soon: bool) -> None:
        self.cancel()
        if soon:
            self._timers.call_soon(self._on_end)
        else:
            self._on_end()

    def cancel(self) -> None:
        self._closed = True
        self._waiting = False
        self._replica.unwatch_changes(self._change)
        if self._probe is not None:
            self._probe.cancel()
            self._probe = None
