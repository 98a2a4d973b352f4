"""The proxy: any gRPC method, any call pattern, forwarded as raw bytes through the mesh.

At the wire level every gRPC call is a stream of length-prefixed messages, so the
proxy answers every method with one stream-stream handler on raw bytes and sends it
through a `MeshChannel` as a streaming call (`meshsim.live.streams`): the balancer
picks the replica, and retries, hedging, breakers, concurrency limits and deadlines
apply until the first response headers commit the call (A6), for any service,
without its .proto. Metadata, the deadline (grpc-timeout), initial metadata, status,
details and trailing metadata pass through. The proxy serves grpc.health.v1 itself:
a service is SERVING while at least one replica behind it is healthy.

grpc.aio calls the handler on asyncio's side of the thread; the call path (picker,
timers, breakers) is Trio's, so the handler hands each call over through the Trio
token and waits for its outcome on an asyncio future.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from typing import Any

import attrs
import grpc
import trio
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from meshsim.core.calls import CallSpec, Pattern
from meshsim.core.endpoint import Endpoint
from meshsim.core.events import HealthChanged
from meshsim.core.health import HealthConfig
from meshsim.core.outlier import OutlierConfig
from meshsim.core.pickers import BalancerConfig
from meshsim.core.policies import CallPolicies
from meshsim.core.retry import METHODS
from meshsim.core.status import StatusCode
from meshsim.live import bridge
from meshsim.live.streams import RETRY_BUFFER_BYTES, RequestReplay, StreamInvocation, Unanswered
from meshsim.live.transport import LiveTransport, grpc_status, status_of
from meshsim.runtime.actor import Supervisor
from meshsim.runtime.balancer import Balancer, OutlierSweeper
from meshsim.runtime.channel import MeshChannel
from meshsim.runtime.health_checker import HealthChecker
from meshsim.runtime.observer import Observer
from meshsim.runtime.timers import TimerQueue

# Headers that belong to this hop's HTTP/2 stream, not to the call.
_HOP_HEADERS = frozenset({"grpc-timeout", "content-type", "te", "user-agent", "grpc-accept-encoding", "grpc-encoding"})
# Per-method policies are worked out once per method name; a client sending endless
# made-up names must not grow the cache without bound.
_POLICY_CACHE_SIZE = 1024


@attrs.frozen
class ProxyConfig:
    service: str
    endpoints: tuple[str, ...]
    listen: str = "127.0.0.1:0"
    balancer: BalancerConfig = attrs.field(factory=BalancerConfig)
    health: HealthConfig = attrs.field(factory=lambda: HealthConfig(interval=1.0, timeout=0.5))
    policies: CallPolicies = attrs.field(factory=CallPolicies)
    outlier: OutlierConfig | None = None
    retry_buffer: int = RETRY_BUFFER_BYTES
    # grpc.aio options for the channels to the replicas and for the listening server
    # (keepalive, max message sizes), passed through as gRPC spells them.
    channel_options: tuple[tuple[str, Any], ...] = ()
    server_options: tuple[tuple[str, Any], ...] = ()
    # How long calls in flight may take to finish when the proxy stops.
    shutdown_grace: float = 1.0
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
        self._token: trio.lowlevel.TrioToken | None = None
        self._channel: MeshChannel | None = None
        self.balancer: Balancer | None = None
        self._publishing: set[asyncio.Task[None]] = set()
        self._policies: dict[str, CallPolicies] = {}

    async def __aenter__(self) -> Proxy:
        config = self.config
        self._token = trio.lowlevel.current_trio_token()
        # Bind first: a port that cannot be had is an error before anything is started.
        self._server = server = grpc.aio.server(options=config.server_options)
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
        channels = {e: grpc.aio.insecure_channel(e, options=config.channel_options) for e in config.endpoints}
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
            config.outlier,
        )
        self._nursery_manager = trio.open_nursery()
        self._nursery = nursery = await self._nursery_manager.__aenter__()
        supervisor = Supervisor(nursery, self.observer)
        timers = TimerQueue()
        supervisor.start(timers)
        supervisor.start(balancer)
        if config.health.enabled:
            service = config.health.service if config.health.service is not None else config.service
            for endpoint in endpoints:
                name = f"health:{config.name}:{endpoint.name}"
                checker = HealthChecker(
                    name, endpoint.name, service, config.health, transport, balancer.mailbox, random.Random(name)
                )
                supervisor.start(checker)
        if config.outlier is not None:
            supervisor.start(OutlierSweeper(f"outliers:{config.name}", config.outlier.interval, balancer.mailbox))
        self._channel = MeshChannel(
            config.name,
            config.service,
            balancer,
            transport,
            self.observer,
            timers,
            config.policies,
            random.Random(f"channel/{config.name}"),
        )
        self.observer.subscribe(HealthChanged, self._health_changed)
        await bridge.wait(server.start())
        await self._publish_health()
        return self

    async def __aexit__(self, *exc_info: Any) -> bool | None:
        assert self._server is not None and self._transport is not None and self._nursery is not None
        with trio.CancelScope(shield=True):
            # Health first, so that whoever checks it stops sending, then the listener (calls in
            # flight get the grace period), then the actors.
            await bridge.wait(self._health.enter_graceful_shutdown())
            await bridge.wait(self._server.stop(self.config.shutdown_grace))
        assert self._channel is not None
        self._channel.abort(StatusCode.UNAVAILABLE)
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
        """One call, on asyncio's side: hand it to the call path, then relay the attempt that answered."""
        assert self._token is not None
        metadata = tuple((key, value) for key, value in context.invocation_metadata() or () if key not in _HOP_HEADERS)
        replay = RequestReplay(self.config.retry_buffer)
        invocation = StreamInvocation(method, replay, metadata)
        reading = asyncio.ensure_future(replay.fill(requests))
        call = CallSpec(
            client=self.config.name,
            service=self.config.service,
            # The proxy cannot tell a method's shape from raw bytes: every call counts as bidi.
            pattern=Pattern.BIDI,
            deadline=context.time_remaining(),
            payload=invocation,
        )
        self._token.run_sync_soon(self._start, call, invocation, self._policies_for(method))
        attempt = None
        try:
            outcome = await invocation.outcome
            if isinstance(outcome, Unanswered):
                if outcome.trailing:
                    context.set_trailing_metadata(outcome.trailing)
                await context.abort(grpc_status(outcome.status), outcome.details)
                return
            attempt = outcome
            answer = attempt.call
            initial = await answer.initial_metadata()
            if initial:
                await context.send_initial_metadata(initial)
            async for message in answer:
                yield message
            trailing = await answer.trailing_metadata()
            if trailing:
                context.set_trailing_metadata(trailing)
            attempt.report(StatusCode.OK)
        except grpc.aio.AioRpcError as error:
            status = status_of(error)
            if attempt is not None:
                attempt.report(status)
            if error.trailing_metadata():
                context.set_trailing_metadata(error.trailing_metadata())
            await context.abort(error.code(), error.details() or "")
        except asyncio.CancelledError:
            if attempt is None or attempt.cancelled_with is None:
                raise  # the caller went away
            # The call path ended the answering attempt (the call's deadline, the proxy stopping).
            await context.abort(grpc_status(attempt.cancelled_with), attempt.details)
        finally:
            reading.cancel()
            if attempt is not None:
                attempt.call.cancel()
                attempt.report(StatusCode.CANCELLED)  # nothing if it was already reported
            self._token.run_sync_soon(_cancel, invocation)

    def _start(self, call: CallSpec, invocation: StreamInvocation, policies: CallPolicies) -> None:
        assert self._channel is not None
        invocation.started(self._channel.start(call, invocation.ended, policies))

    def _policies_for(self, method: str) -> CallPolicies:
        """The retry or hedging policy for `method`: a policy names the methods it covers by their short
        name or full path; one that names none covers every method (the proxy knows no .proto)."""
        policies = self._policies.get(method)
        if policies is None:
            short = method.rsplit("/", 1)[-1]
            configured = self.config.policies

            def covers(methods: tuple[str, ...]) -> bool:
                return methods == METHODS or short in methods or method in methods

            retry, hedging = configured.retry, configured.hedging
            policies = CallPolicies(
                retry=attrs.evolve(retry, methods=METHODS) if retry is not None and covers(retry.methods) else None,
                hedging=(
                    attrs.evolve(hedging, methods=METHODS) if hedging is not None and covers(hedging.methods) else None
                ),
            )
            if len(self._policies) >= _POLICY_CACHE_SIZE:
                self._policies.clear()
            self._policies[method] = policies
        return policies


def _cancel(invocation: StreamInvocation) -> None:
    """The proxied call is over on the caller's side: a call still going ends CANCELLED."""
    run = invocation.run
    if run is not None and not run.done:
        run.finish(StatusCode.CANCELLED)


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
