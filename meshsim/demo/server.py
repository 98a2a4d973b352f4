"""Demo replicas: grpc.aio servers with MeshService, grpc.health.v1 and server reflection.

Shutdown is the orderly kind a load balancer can follow: health goes NOT_SERVING
first (so health checkers and Kubernetes probes stop sending), then the server stops
accepting calls and gives the calls in flight `grace` seconds to finish.

Each replica takes chaos faults (demo/chaos.py) from the process's admin endpoint
(demo/process.py): a kill stops that one replica's server and starts it again on the
same port when the fault ends.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator, Sequence
from typing import Any

import attrs
import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from meshsim.core.calls import MESH_SERVICE
from meshsim.core.chaos import ChaosFault
from meshsim.core.errors import StartupError
from meshsim.core.status import HealthStatus
from meshsim.demo import chaos
from meshsim.demo.metrics import ServerMetrics
from meshsim.demo.servicer import MeshServicer, ServerFaults
from meshsim.live.security import ServerCertificates
from meshsim.live.status import health_to_grpc
from meshsim.live.tracing import ServerTracing, Tracing
from meshsim.pb.v1 import mesh_pb2, mesh_pb2_grpc
from meshsim.tls.material import TlsError, TlsFiles

logger = logging.getLogger(__name__)

# A replica whose port was taken while it was killed tries to start again this often, then less often.
_REVIVE_FIRST_WAIT = 0.5
_REVIVE_MAX_WAIT = 10.0


class ServeError(StartupError):
    """A replica could not start (the message names the address and why)."""


@attrs.frozen
class ServeConfig:
    host: str = "127.0.0.1"
    port: int = 50051
    replicas: int = 1
    grace: float = 5.0
    faults: ServerFaults = attrs.field(factory=ServerFaults)
    # mTLS: the server pair and the CA whose clients it accepts (None: plaintext).
    tls: TlsFiles | None = None
    # Where the admin endpoint listens ("host:port": /metrics, /faults, ...), or nowhere.
    metrics_listen: str | None = None
    # The admin endpoint's bearer token (required beyond loopback), or none.
    admin_token: str | None = attrs.field(default=None, repr=False)
    # The service the replicas are named after in chaos targets: api/0, api/1, ...
    name: str = "api"
    # Keepalive pings are welcome this often, with or without calls: a default gRPC server
    # allows one every 5 minutes and answers more with GOAWAY too_many_pings.
    keepalive_min_time: float = 1.0
    # Share the port with other processes listening on it (SO_REUSEPORT): off, so that a second
    # `meshsim serve` on a port in use is an error instead of silently taking half its calls.
    reuse_port: bool = False


class _HeldHealth(health.aio.HealthServicer):
    """grpc.health.v1 that a blackhole holds (a replica that answers nothing answers no probe)."""

    def __init__(self, faults: chaos.ReplicaFaults) -> None:
        super().__init__()
        self._faults = faults

    async def Check(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        await self._faults.probe_admitted()
        return await super().Check(request, context)

    async def Watch(self, request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        await self._faults.probe_admitted()
        await super().Watch(request, context)  # it writes with context.write
        return
        yield  # an async generator, as grpc expects of a server-streaming handler written this way


class Replica:
    """One grpc.aio server on one port."""

    def __init__(
        self,
        host: str,
        port: int,
        faults: ServerFaults,
        tls: TlsFiles | None = None,
        metrics: ServerMetrics | None = None,
        keepalive_min_time: float = 1.0,
        reuse_port: bool = False,
        name: str = "",
        tracing: Tracing | None = None,
    ) -> None:
        self.host = host
        self.requested_port = port
        self.port = 0
        self.name = name
        self.faults = faults
        self.tls = tls
        self.certificates: ServerCertificates | None = None
        self.chaos = chaos.ReplicaFaults(random.Random(f"chaos:{name}:{port}"))
        self.health = _HeldHealth(self.chaos)
        self.servicer: MeshServicer | None = None
        self.metrics = metrics
        self.keepalive_min_time = keepalive_min_time
        self.reuse_port = reuse_port
        self.tracing = tracing
        self._server: grpc.aio.Server | None = None
        self._kills: list[ChaosFault] = []
        self._health_faults: list[ChaosFault] = []
        self._switching = asyncio.Lock()
        self._pending: set[asyncio.Task[None]] = set()
        self._stopped = False

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def up(self) -> bool:
        """Serving calls: started, not stopped, not killed."""
        return self._server is not None

    @property
    def serving(self) -> bool:
        """Up, and its health says SERVING."""
        return self.up and not self._health_faults

    async def start(self) -> None:
        if self.tls is not None:
            try:
                self.certificates = ServerCertificates(self.tls)
            except TlsError as error:
                raise ServeError(str(error)) from None
        counting = None if self.metrics is None else self.metrics.interceptor()
        interceptors: list[grpc.aio.ServerInterceptor] = [] if counting is None else [counting]
        if self.tracing is not None:
            interceptors.append(ServerTracing(self.tracing))
        server = grpc.aio.server(interceptors=interceptors, options=self._options())
        address = f"{self.host}:{self.requested_port}"
        try:
            if self.certificates is None:
                self.port = server.add_insecure_port(address)
            else:
                self.port = server.add_secure_port(address, self.certificates.credentials())
        except RuntimeError:
            # grpc's own words only say to set GRPC_VERBOSITY for the details.
            self.port = 0
        if self.port == 0:
            raise ServeError(f"cannot listen on {address}: address in use or not local")
        self.requested_port = self.port  # a restart after a kill comes back on the same port
        if counting is not None:
            counting.replica = self.address
        if self.servicer is None:
            self.servicer = MeshServicer(self.address, self.faults, chaos=self.chaos)
        mesh_pb2_grpc.add_MeshServiceServicer_to_server(self.servicer, server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        names = (
            mesh_pb2.DESCRIPTOR.services_by_name["MeshService"].full_name,
            health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
            reflection.SERVICE_NAME,
        )
        reflection.enable_server_reflection(names, server)
        await server.start()
        self._server = server
        await self._set_health()

    async def _set_health(self) -> None:
        """SERVING, or what the latest health fault says instead."""
        latest = self._health_faults[-1].effect if self._health_faults else None
        status: HealthStatus = getattr(latest, "status", HealthStatus.SERVING)
        answer = health_to_grpc(status)
        for service in ("", MESH_SERVICE):
            await self.health.set(service, answer)
        self._report_health(serving=status is HealthStatus.SERVING and self.up)

    def _options(self) -> tuple[tuple[str, int], ...]:
        return (
            ("grpc.http2.min_ping_interval_without_data_ms", int(self.keepalive_min_time * 1000)),
            ("grpc.keepalive_permit_without_calls", 1),
            # gRPC servers share their port by default; a port held by another server must be an error.
            ("grpc.so_reuseport", int(self.reuse_port)),
        )

    async def stop(self, grace: float) -> None:
        """Stop for good: a restart under way (the end of a kill) finishes first, none follows."""
        async with self._switching:
            self._stopped = True
            if self._server is None:
                return
            # NOT_SERVING first, for every service name, so that health checkers drain us.
            await self.health.enter_graceful_shutdown()
            self._report_health(serving=False)
            await self._server.stop(grace)
            self._server = None

    # --- chaos (called by the process's fault board) -------------------------------------------

    def apply(self, fault: ChaosFault) -> None:
        if fault.action == "kill":
            self._kills.append(fault)
            if len(self._kills) == 1:
                self._later(self._kill())
        elif fault.action == "health":
            self._health_faults.append(fault)
            self._later(self._set_health())
        else:
            self.chaos.add(fault)

    def clear(self, fault: ChaosFault) -> None:
        if fault in self._kills:
            self._kills.remove(fault)
            if not self._kills:
                self._later(self._revive())
        elif fault in self._health_faults:
            self._health_faults.remove(fault)
            self._later(self._set_health())
        else:
            self.chaos.remove(fault)

    async def _kill(self) -> None:
        async with self._switching:
            server, self._server = self._server, None
            if server is not None:
                self._report_health(serving=False)
                await server.stop(0)  # connections break; calls in flight fail UNAVAILABLE

    async def _revive(self) -> None:
        """Start again on the same port once the last kill is over; while the port is taken (another
        process took it meanwhile), try again, less and less often, until it is free or we stop."""
        wait = _REVIVE_FIRST_WAIT
        said = False
        while True:
            async with self._switching:
                if self._server is not None or self._stopped or self._kills:
                    return
                try:
                    await self.start()
                except ServeError as error:
                    if not said:
                        logger.error("%s (%s) cannot start again: %s; trying again", self.name, self.address, error)
                        said = True
                else:
                    if said:
                        logger.info("%s (%s) is serving again", self.name, self.address)
                    return
            await asyncio.sleep(wait)
            wait = min(wait * 2, _REVIVE_MAX_WAIT)

    def _later(self, work: Any) -> None:
        # asyncio keeps only weak references to tasks: hold each one until it is done.
        task = asyncio.get_running_loop().create_task(work)
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def settle(self) -> None:
        """Wait for kills, restarts and health changes under way."""
        while self._pending:
            await asyncio.gather(*self._pending)

    def _report_health(self, serving: bool) -> None:
        if self.metrics is not None:
            self.metrics.set_health(self.address, MESH_SERVICE, serving)


async def start_replicas(
    config: ServeConfig, metrics: ServerMetrics | None = None, tracing: Tracing | None = None
) -> list[Replica]:
    """Start `config.replicas` replicas on consecutive ports (each its own OS-chosen port when port is 0)."""
    replicas: list[Replica] = []
    try:
        for index in range(config.replicas):
            port = config.port + index if config.port else 0
            # Each replica its own copy, so that chaos can single one out.
            replica = Replica(
                config.host,
                port,
                attrs.evolve(config.faults),
                config.tls,
                metrics,
                config.keepalive_min_time,
                config.reuse_port,
                name=f"{config.name}/{index}",
                tracing=tracing,
            )
            await replica.start()
            replicas.append(replica)
    except BaseException:
        await stop_replicas(replicas, 0)
        raise
    return replicas


async def stop_replicas(replicas: Sequence[Replica], grace: float) -> None:
    await asyncio.gather(*(replica.stop(grace) for replica in replicas))
