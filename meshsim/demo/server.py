"""Demo replicas: grpc.aio servers with MeshService, grpc.health.v1 and server reflection.

Shutdown is the orderly kind a load balancer can follow: health goes NOT_SERVING
first (so health checkers and Kubernetes probes stop sending), then the server stops
accepting calls and gives the calls in flight `grace` seconds to finish.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable, Sequence

import attrs
import grpc
import hypercorn.asyncio
import prometheus_client
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from meshsim.core.calls import MESH_SERVICE
from meshsim.core.errors import StartupError
from meshsim.demo.metrics import ServerMetrics
from meshsim.demo.servicer import MeshServicer, ServerFaults
from meshsim.live.metrics import http_config
from meshsim.live.security import ServerCertificates
from meshsim.live.status import serving_to_grpc
from meshsim.pb.v1 import mesh_pb2, mesh_pb2_grpc
from meshsim.tls.material import TlsError, TlsFiles


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
    # Where Prometheus scrapes the replicas' /metrics ("host:port"), or nowhere.
    metrics_listen: str | None = None
    # Keepalive pings are welcome this often, with or without calls: a default gRPC server
    # allows one every 5 minutes and answers more with GOAWAY too_many_pings.
    keepalive_min_time: float = 1.0
    # Share the port with other processes listening on it (SO_REUSEPORT): off, so that a second
    # `meshsim serve` on a port in use is an error instead of silently taking half its calls.
    reuse_port: bool = False


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
    ) -> None:
        self.host = host
        self.requested_port = port
        self.port = 0
        self.faults = faults
        self.tls = tls
        self.certificates: ServerCertificates | None = None
        self.health = health.aio.HealthServicer()
        self.servicer: MeshServicer | None = None
        self.metrics = metrics
        self.keepalive_min_time = keepalive_min_time
        self.reuse_port = reuse_port
        self._server: grpc.aio.Server | None = None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    async def start(self) -> None:
        if self.tls is not None:
            try:
                self.certificates = ServerCertificates(self.tls)
            except TlsError as error:
                raise ServeError(str(error)) from None
        counting = None if self.metrics is None else self.metrics.interceptor()
        server = grpc.aio.server(interceptors=() if counting is None else (counting,), options=self._options())
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
        if counting is not None:
            counting.replica = self.address
        self.servicer = MeshServicer(self.address, self.faults)
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
        for service in ("", MESH_SERVICE):
            await self.health.set(service, serving_to_grpc(serving=True))
        self._report_health(serving=True)

    def _options(self) -> tuple[tuple[str, int], ...]:
        return (
            ("grpc.http2.min_ping_interval_without_data_ms", int(self.keepalive_min_time * 1000)),
            ("grpc.keepalive_permit_without_calls", 1),
            # gRPC servers share their port by default; a port held by another server must be an error.
            ("grpc.so_reuseport", int(self.reuse_port)),
        )

    async def stop(self, grace: float) -> None:
        if self._server is None:
            return
        # NOT_SERVING first, for every service name, so that health checkers drain us.
        await self.health.enter_graceful_shutdown()
        self._report_health(serving=False)
        await self._server.stop(grace)
        self._server = None

    def _report_health(self, serving: bool) -> None:
        if self.metrics is not None:
            self.metrics.set_health(self.address, MESH_SERVICE, serving)


async def start_replicas(config: ServeConfig, metrics: ServerMetrics | None = None) -> list[Replica]:
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
            )
            await replica.start()
            replicas.append(replica)
    except BaseException:
        await stop_replicas(replicas, 0)
        raise
    return replicas


async def stop_replicas(replicas: Sequence[Replica], grace: float) -> None:
    await asyncio.gather(*(replica.stop(grace) for replica in replicas))


async def serve(
    config: ServeConfig, announce: Callable[[Replica], None], announce_metrics: Callable[[str], None] | None = None
) -> None:
    """Run replicas (and their /metrics) until SIGINT or SIGTERM, then shut them down gracefully."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    metrics = None if config.metrics_listen is None else ServerMetrics()
    scraping = None
    if metrics is not None:
        assert config.metrics_listen is not None
        try:
            http, address = http_config(config.metrics_listen)
        except OSError as error:
            raise ServeError(f"cannot serve metrics on {config.metrics_listen}: {error.strerror}") from None
        application = prometheus_client.make_asgi_app(metrics.registry)
        scraping = asyncio.create_task(hypercorn.asyncio.serve(application, http, shutdown_trigger=stop.wait))
    try:
        replicas = await start_replicas(config, metrics)
        try:
            for replica in replicas:
                announce(replica)
            if metrics is not None and announce_metrics is not None:
                announce_metrics(address)
            await stop.wait()
        finally:
            await stop_replicas(replicas, config.grace)
    finally:
        stop.set()
        if scraping is not None:
            await scraping
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
