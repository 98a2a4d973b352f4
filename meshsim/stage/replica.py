"""One of a scenario's replicas as a real grpc.aio server on loopback, and the faults on it.

The faults active on it fold into its `Conditions` (core/faults), as on a simulated
replica: the servicer reads latency, errors, health and the blackhole from them. A
kill stops the server (its connections break, the calls it held fail UNAVAILABLE) and
the end of the kill starts it again on the same port. A partition cuts one client
from it: the callers' transports are told (`on_cut`), as the simulated network cuts
a client from a replica.

In-process servers rather than child processes: a process per replica costs about a
second and 40 MB to start and a hop per probe, and what a kill must mean (connections
refused and broken, calls failing) is what stopping the server does.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from meshsim.core.errors import StartupError
from meshsim.core.faults import Conditions, conditions_of
from meshsim.core.scenario import FaultConfig, ServiceConfig
from meshsim.live import bridge
from meshsim.pb.v1 import mesh_pb2, mesh_pb2_grpc
from meshsim.stage.servicer import ScenarioHealth, ScenarioServicer

logger = logging.getLogger(__name__)

_SERVICES = (
    mesh_pb2.DESCRIPTOR.services_by_name["MeshService"].full_name,
    health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
    reflection.SERVICE_NAME,
)


class StagedReplica:
    def __init__(self, service: ServiceConfig, index: int, seed: int, host: str = "127.0.0.1") -> None:
        self.name = service.replica_name(index)
        self.service = service
        self.host = host
        self.port = 0
        # The simulator's stream for this replica, so a live run draws as a simulated one does, and
        # the service as this replica serves it ([[service.replica]]), as the simulated one does.
        self.servicer = ScenarioServicer(
            self.name, service.behaviour(index), random.Random(f"{seed}/replica:{self.name}")
        )
        self.health = ScenarioHealth(self.servicer)
        self.conditions = Conditions()
        self._faults: list[FaultConfig] = []
        self._server: grpc.aio.Server | None = None
        self._switching = asyncio.Lock()
        self._closed = False
        self._failure: StartupError | None = None
        self._pending: set[asyncio.Future[None]] = set()
        # Told the clients cut from this replica whenever that changes (a partition).
        self.on_cut: Callable[[str, frozenset[str]], None] = lambda replica, clients: None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    async def start(self) -> None:
        """Serve (the first time on a port the OS picks, then on that port again)."""
        server = grpc.aio.server()
        mesh_pb2_grpc.add_MeshServiceServicer_to_server(self.servicer, server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        reflection.enable_server_reflection(_SERVICES, server)
        try:
            port = server.add_insecure_port(f"{self.host}:{self.port}")
        except RuntimeError as error:  # grpcio says a port it cannot bind with a bare RuntimeError
            raise StartupError(f"replica {self.name}: cannot listen on {self.address}: {error}") from None
        self.port = port
        await server.start()
        self._server = server

    async def stop(self, grace: float | None = 0) -> None:
        server, self._server = self._server, None
        if server is not None:
            await server.stop(grace)

    async def close(self) -> None:
        """Stop for good: a restart under way (the end of a kill) finishes first, none follows."""
        async with self._switching:
            self._closed = True
            await self.stop(0)

    # --- faults (called by the fault injector, on Trio's side) ---------------------------------

    def apply(self, fault: FaultConfig) -> None:
        self._faults.append(fault)
        self._recompute()

    def clear(self, fault: FaultConfig) -> None:
        self._faults.remove(fault)
        self._recompute()

    def _recompute(self) -> None:
        was = self.conditions
        now = self.conditions = conditions_of([fault.effect for fault in self._faults])
        self.servicer.conditions = now
        if now.blackholed:
            self.servicer.open.clear()
        else:
            self.servicer.open.set()
        self.health.changed()
        if now.down != was.down:
            self._switch(down=now.down)
        if now.cut_from != was.cut_from:
            self.on_cut(self.name, frozenset(now.cut_from))

    def _switch(self, down: bool) -> None:
        """Stop the server (a kill) or start it again (the kill is over), in order."""

        async def switch() -> None:
            async with self._switching:
                if down:
                    await self.stop(0)
                elif self._server is None and not self._closed:
                    try:
                        await self.start()
                    except StartupError as error:
                        # Its port was taken while it was down: the rest of the run goes on
                        # without it, and the run ends saying so.
                        logger.error("%s; it stays down", error)
                        self._failure = error

        task = bridge.start(switch(), lambda _: None)
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def settle(self) -> None:
        """Wait for kills and restarts under way (asyncio's side); StartupError if one could not
        start the replica again."""
        if self._pending:
            await asyncio.gather(*self._pending)
        if self._failure is not None:
            raise self._failure
