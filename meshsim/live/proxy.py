"""The proxy: any gRPC method, any call pattern, forwarded as raw bytes to the replica the picker chooses.

At the wire level every gRPC call is a stream of length-prefixed messages, so the
proxy answers every method with one stream-stream handler on raw bytes and opens a
stream-stream call to the chosen replica: unary, server-streaming, client-streaming
and bidi calls all pass through unchanged, for any service, without its .proto.
Metadata, the deadline (grpc-timeout), initial metadata, status, details and trailing
metadata pass through. The proxy serves grpc.health.v1 itself: a service is SERVING
while at least one replica behind it is healthy.

Requests are served on asyncio's side of the thread (grpc.aio's server calls the
handler there); the handler reads the balancer's current picker synchronously, as a
call path should, and reports outcomes to the balancer and the event bus with a clock
reading that matches Trio's. Retries and hedging in the proxy are not done yet
(docs/live.md).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator
from typing import Any

import attrs
import grpc
import trio
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from meshsim.core.calls import Pattern
from meshsim.core.endpoint import Endpoint
from meshsim.core.events import HealthChanged
from meshsim.core.health import HealthConfig
from meshsim.core.pickers import BalancerConfig
from meshsim.core.status import StatusCode
from meshsim.live import bridge
from meshsim.live.transport import LiveTransport, status_of
from meshsim.runtime.actor import Supervisor
from meshsim.runtime.balancer import Balancer
from meshsim.runtime.channel import record_direct_call
from meshsim.runtime.health_checker import HealthChecker
from meshsim.runtime.observer import Observer

# Headers that belong to this hop's HTTP/2 stream, not to the call.
_HOP_HEADERS = frozenset({"grpc-timeout", "content-type", "te", "user-agent", "grpc-accept-encoding", "grpc-encoding"})


@attrs.frozen
class ProxyConfig:
    service: str
    endpoints: tuple[str, ...]
    listen: str = "127.0.0.1:0"
    balancer: BalancerConfig = attrs.field(factory=BalancerConfig)
    health: HealthConfig = attrs.field(factory=lambda: HealthConfig(interval=1.0, timeout=0.5))
    name: str = "proxy"


class Proxy:
    """Run with `async with Proxy(config) as proxy:` inside meshsim.live.run(); `proxy.address` is where it listens."""

    def __init__(self, config: ProxyConfig, observer: Observer | None = None) -> None:
        if not config.endpoints:
            raise ValueError("the proxy needs at least one replica endpoint")
        self.config = config
        self.observer = observer or Observer()
        self.address = ""
        self._server: grpc.aio.Server | None = None
        self._health = health.aio.HealthServicer()
        self._nursery_manager: Any = None
        self._nursery: trio.Nursery | None = None
        self._transport: LiveTransport | None = None
        self.balancer: Balancer | None = None
        self._offset = 0.0
        self._publishing: set[asyncio.Task[None]] = set()

    def now(self) -> float:
        """Trio's clock, read from either side of the thread (grpc.aio's handlers run outside Trio tasks)."""
        return time.monotonic() + self._offset

    async def __aenter__(self) -> Proxy:
        config = self.config
        self._offset = trio.current_time() - time.monotonic()
        # Bind first: a port that cannot be had is an error before anything is started.
        self._server = server = grpc.aio.server()
        health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
        server.add_generic_rpc_handlers((_ForwardEverything(self),))
        try:
            port = server.add_insecure_port(config.listen)
        except RuntimeError:
            port = 0
        if port == 0:
            raise ValueError(f"the proxy cannot listen on {config.listen}")
        host = config.listen.rsplit(":", 1)[0]
        self.address = f"{host}:{port}"
        channels = {e: grpc.aio.insecure_channel(e) for e in config.endpoints}
        self._transport = transport = LiveTransport(channels)
        endpoints = [Endpoint(e, index=i) for i, e in enumerate(config.endpoints)]
        self.balancer = balancer = Balancer(
            f"balancer:{config.name}",
            config.name,
            config.service,
            config.balancer,
            config.health,
            endpoints,
            random.Random(config.name),
            self.observer,
            now=self.now,
        )
        self._nursery_manager = trio.open_nursery()
        self._nursery = nursery = await self._nursery_manager.__aenter__()
        supervisor = Supervisor(nursery, self.observer)
        supervisor.start(balancer)
        if config.health.enabled:
            for endpoint in endpoints:
                name = f"health:{config.name}:{endpoint.name}"
                checker = HealthChecker(
                    name, endpoint.name, config.service, config.health, transport, balancer.mailbox, random.Random(name)
                )
                supervisor.start(checker)
        self.observer.subscribe(HealthChanged, self._health_changed)
        await bridge.wait(server.start())
        await self._publish_health()
        return self

    async def __aexit__(self, *exc_info: Any) -> bool | None:
        assert self._server is not None and self._transport is not None and self._nursery is not None
        with trio.CancelScope(shield=True):
            # Health first, so that whoever checks it stops sending, then the listener, then the actors.
            await bridge.wait(self._health.enter_graceful_shutdown())
            await bridge.wait(self._server.stop(1.0))
        self._nursery.cancel_scope.cancel()
        try:
            return bool(await self._nursery_manager.__aexit__(*exc_info))
        finally:
            with trio.CancelScope(shield=True):
                await self._transport.close()

    def _health_changed(self, event: HealthChanged) -> None:
        # asyncio keeps only weak references to tasks: hold this one until it is done.
        task = asyncio.get_running_loop().create_task(self._publish_health())
        self._publishing.add(task)
        task.add_done_callback(self._publishing.discard)

    async def _publish_health(self) -> None:
        assert self.balancer is not None
        serving = any(e.healthy for e in self.balancer.endpoints)
        status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        for service in ("", self.config.service):
            await self._health.set(service, status)

    async def forward(
        self, method: str, requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[bytes]:
        assert self.balancer is not None and self._transport is not None
        started = self.now()
        endpoint = self.balancer.picker.pick(None)
        if endpoint is None:
            self._record(None, StatusCode.UNAVAILABLE, started)
            await context.abort(grpc.StatusCode.UNAVAILABLE, "meshsim proxy: no healthy replica")
        assert endpoint is not None
        metadata = tuple((key, value) for key, value in context.invocation_metadata() or () if key not in _HOP_HEADERS)
        call = self._transport.channels[endpoint.name].stream_stream(method)(
            requests, timeout=context.time_remaining(), metadata=metadata or None
        )
        endpoint.in_flight += 1
        status = StatusCode.CANCELLED
        try:
            initial = await call.initial_metadata()
            if initial:
                await context.send_initial_metadata(initial)
            async for message in call:
                yield message
            trailing = await call.trailing_metadata()
            if trailing:
                context.set_trailing_metadata(trailing)
            status = StatusCode.OK
        except grpc.aio.AioRpcError as error:
            status = status_of(error)
            if error.trailing_metadata():
                context.set_trailing_metadata(error.trailing_metadata())
            await context.abort(error.code(), error.details() or "")
        finally:
            call.cancel()
            endpoint.in_flight -= 1
            self._record(endpoint, status, started)

    def _record(self, endpoint: Endpoint | None, status: StatusCode, started: float) -> None:
        assert self.balancer is not None
        # The proxy cannot tell a method's shape from raw bytes: every call counts as bidi.
        record_direct_call(
            self.balancer, self.observer, self.config.name, Pattern.BIDI, endpoint, status, started, self.now()
        )


class _ForwardEverything(grpc.GenericRpcHandler):
    def __init__(self, proxy: Proxy) -> None:
        self._proxy = proxy

    def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        method = details.method
        proxy = self._proxy

        async def handle(requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
            async for message in proxy.forward(method, requests, context):
                yield message

        return grpc.stream_stream_rpc_method_handler(handle)
