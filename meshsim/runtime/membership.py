"""The membership actor: keeps a balancer's endpoints in step with a discovery source.

Every `interval` it asks its resolver for the endpoints (a DNS name, a watched file:
the resolver is the backend's business), and when the answer changes it opens
connections to the new endpoints, tells the balancer (`EndpointsResolved`), starts
their health checkers, and stops the checkers of the ones that left. A removed
endpoint's connection stays open until the calls already on it finish.

A failed resolution, or one that finds nothing, changes nothing (gRPC keeps its
last good address list on a resolver error): a DNS hiccup or a half-written file
must not empty the cluster. It is reported as a DiscoveryFailed event.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import trio

from meshsim.core.endpoint import Endpoint
from meshsim.core.events import DiscoveryFailed
from meshsim.runtime.balancer import Balancer, EndpointsResolved
from meshsim.runtime.observer import Observer


class Resolver(Protocol):
    @property
    def source(self) -> str:
        """What is resolved, for messages ("dns:orders.internal:50051")."""
        ...

    async def resolve(self) -> tuple[str, ...]:
        """The endpoints ("host:port") now; raises on failure."""
        ...


class Connections(Protocol):
    """What carries calls to endpoints, told when one joins or leaves."""

    def open(self, endpoint: str) -> None: ...

    async def close_endpoint(self, endpoint: str) -> None: ...


class Membership:
    def __init__(
        self,
        name: str,
        resolver: Resolver,
        interval: float,
        balancer: Balancer,
        connections: Connections,
        observer: Observer,
        health_checker: Callable[[str], Any] | None = None,
    ) -> None:
        """`health_checker(endpoint)` makes the actor that checks a new endpoint (None: no checks)."""
        self.name = name
        self._resolver = resolver
        self._interval = interval
        self._balancer = balancer
        self._connections = connections
        self._observer = observer
        self._health_checker = health_checker
        self._checking: dict[str, trio.CancelScope] = {}
        self._draining: dict[str, Endpoint] = {}
        self._nursery: trio.Nursery | None = None
        self._primed = False

    async def prime(self) -> None:
        """Resolve once before the balancer runs, so that the first calls find endpoints (a gRPC
        channel, too, holds its first calls until the resolver has answered)."""
        try:
            found = tuple(dict.fromkeys(await self._resolver.resolve()))
        except Exception as error:
            self._failed(f"{type(error).__name__}: {error}")
            return
        if not found:
            self._failed("found no endpoints")
            return
        for name in found:
            self._connections.open(name)
        for endpoint in self._balancer.endpoints:
            if endpoint.name not in found:
                self._draining[endpoint.name] = endpoint  # a configured endpoint discovery does not know
        self._balancer.handle(EndpointsResolved(found))
        self._primed = True

    async def run(self) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            for endpoint in self._balancer.endpoints:
                await self._start_checking(endpoint.name)
            if not self._primed:
                await self.refresh()
            while True:
                await trio.sleep(self._interval)
                await self.refresh()

    async def refresh(self) -> None:
        try:
            found = await self._resolver.resolve()
        except Exception as error:  # whatever the source raised, the cluster keeps its endpoints
            self._failed(f"{type(error).__name__}: {error}")
        else:
            if found:
                await self._apply(tuple(dict.fromkeys(found)))
            else:
                self._failed("found no endpoints")
        await self._close_drained()

    async def _apply(self, found: tuple[str, ...]) -> None:
        balancer = self._balancer
        current = {e.name for e in balancer.endpoints}
        added = [name for name in found if name not in current]
        removed = [name for name in current if name not in found]
        if not added and not removed:
            return
        for name in added:
            self._draining.pop(name, None)
            self._connections.open(name)
        for name in removed:
            endpoint = balancer.endpoint(name)
            if endpoint is not None:
                self._draining[name] = endpoint
            scope = self._checking.pop(name, None)
            if scope is not None:
                scope.cancel()
        await balancer.mailbox.send(EndpointsResolved(found))
        for name in added:
            await self._start_checking(name)

    async def _start_checking(self, name: str) -> None:
        if self._health_checker is None or name in self._checking:
            return
        assert self._nursery is not None
        self._checking[name] = await self._nursery.start(self._check, self._health_checker(name))

    @staticmethod
    async def _check(checker: Any, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        with trio.CancelScope() as scope:
            task_status.started(scope)
            await checker.run()

    async def _close_drained(self) -> None:
        balancer = self._balancer
        for name, endpoint in list(self._draining.items()):
            # Only once the balancer has taken the new list (its mailbox may still hold it) can no
            # new call pick the endpoint; then the calls on it are all there will be.
            if endpoint.in_flight == 0 and balancer.endpoint(name) is None:
                del self._draining[name]
                await self._connections.close_endpoint(name)

    def _failed(self, error: str) -> None:
        self._observer.emit(DiscoveryFailed(trio.current_time(), self._balancer.client, self._resolver.source, error))
