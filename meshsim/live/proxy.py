"""The proxy: any gRPC method, any call pattern, forwarded as raw bytes through the mesh.

At the wire level every gRPC call is a stream of length-prefixed messages, so the
proxy answers every method with one stream-stream handler on raw bytes and sends it
through a `MeshChannel` as a streaming call (`meshsim.live.streams`): the balancer
picks the replica, and retries, hedging, breakers, concurrency limits and deadlines
apply until the first response headers commit the call (A6), for any service,
without its .proto. Metadata, the deadline (grpc-timeout), initial metadata, status,
details and trailing metadata pass through. The proxy serves grpc.health.v1 itself:
a service is SERVING while at least one replica behind it is healthy.

Methods that reflection says are unary are forwarded as unary calls instead, which
costs a fraction of a stream on both sides (`reflection.MethodShapes`).

A call's hash key, for the policies that pick by key (consistent_hash), is the value of
the configured `hash_header` request header, or a random key of the call's own (`_CallKeys`).

grpc.aio calls the handlers on asyncio's side of the thread, and the call path runs
right there (`bridge.HostHome`): a proxied call never crosses between the loops.
Health checks, discovery and the balancers' mailboxes are Trio actors.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

import attrs
import grpc
import trio
from grpc_health.v1 import health, health_pb2_grpc

from meshsim.core.addresses import join_host_port, split_host_port
from meshsim.core.call_log import CallLogError, CallRecorder
from meshsim.core.calls import CallSpec, Pattern
from meshsim.core.chaos import FaultBoard
from meshsim.core.errors import StartupError
from meshsim.core.events import HealthChanged, MembershipChanged, RequestFinished
from meshsim.core.pickers import REGISTERED, BalancerConfig
from meshsim.core.policies import CallPolicies
from meshsim.core.status import StatusCode
from meshsim.live import bridge, reflection
from meshsim.live.admin import AdminApp, check_listen, serve_admin
from meshsim.live.bridge import HostHome
from meshsim.live.chaos import fault_board
from meshsim.live.config import Cluster, ProxyConfig, ProxyConfigError
from meshsim.live.event_log import AccessLog, log_mesh_events
from meshsim.live.fault_filter import FaultFilter
from meshsim.live.metrics import MeshMetrics
from meshsim.live.proxy_admin import ProxyAdmin
from meshsim.live.recording import keep_flushing
from meshsim.live.security import ClientCertificates, ServerCertificates
from meshsim.live.status import PUSHBACK_KEY, from_grpc, serving_to_grpc, status_of, to_grpc
from meshsim.live.streams import RequestReplay, StreamInvocation, Unanswered, unanswered_details
from meshsim.live.tracing import CallTrace, Tracing
from meshsim.live.transport import LiveAttempt, UnaryInvocation
from meshsim.live.upstream import Upstream
from meshsim.runtime.actor import Background, Supervisor
from meshsim.runtime.balancer import Balancer
from meshsim.runtime.channel import CallRun
from meshsim.runtime.observer import Observer
from meshsim.tls.material import TlsFiles

# Headers that belong to this hop's HTTP/2 stream, not to the call.
_HOP_HEADERS = frozenset({"grpc-timeout", "content-type", "te", "user-agent", "grpc-accept-encoding", "grpc-encoding"})
# Per-method policies and handlers are worked out once per method name; a client sending
# endless made-up names must not grow the caches without bound.
_POLICY_CACHE_SIZE = 1024
# How early a caller's cancellation may come and still be its deadline passing (the two clocks
# that time it, the listener's and the call path's, are not the same timer).
_DEADLINE_SLACK = 0.1
# How long the proxy waits for its replicas' first health checks before it listens.
_WARM_UP = 2.0


def grpc_options(config: ProxyConfig, listener: bool) -> tuple[tuple[str, Any], ...]:
    """The config's connection settings as gRPC channel (or, for the listener, server) arguments."""
    options: list[tuple[str, Any]] = []
    if config.max_message_bytes is not None:
        options += [
            ("grpc.max_receive_message_length", config.max_message_bytes),
            ("grpc.max_send_message_length", config.max_message_bytes),
        ]
    keepalive = config.keepalive
    if keepalive is not None:
        options += [
            ("grpc.keepalive_time_ms", int(keepalive.time * 1000)),
            ("grpc.keepalive_timeout_ms", int(keepalive.timeout * 1000)),
            ("grpc.keepalive_permit_without_calls", int(keepalive.permit_without_calls)),
            # gRPC stops pinging after two pings with no data between them, which is all a
            # connection carrying only a quiet health Watch sends: keepalive would stop
            # noticing a hung replica just when it is the only thing that could.
            ("grpc.http2.max_pings_without_data", 0),
        ]
        if listener:
            # Let clients ping as often as the proxy itself does, or the listener sends them GOAWAY.
            options.append(("grpc.http2.min_ping_interval_without_data_ms", int(keepalive.time * 1000)))
    if config.idle_timeout is not None and not listener:
        options.append(("grpc.client_idle_timeout_ms", int(config.idle_timeout * 1000)))
    if listener:
        options += [
            # gRPC servers share their port by default: a second proxy on this address would take
            # half of the first one's calls instead of failing to start.
            ("grpc.so_reuseport", int(config.reuse_port)),
            # One connection must not hold every call the proxy will take.
            ("grpc.max_concurrent_streams", config.max_concurrent_streams),
            # gRPC refuses metadata over its limit with a bare RESOURCE_EXHAUSTED; up to this
            # bound the proxy's own check refuses it instead, saying why (Proxy._admit).
            ("grpc.max_metadata_size", _core_metadata_limit(config)),
            ("grpc.absolute_max_metadata_size", _core_metadata_limit(config)),
        ]
    return tuple(options)


def _core_metadata_limit(config: ProxyConfig) -> int:
    return max(8 * config.max_metadata_bytes, 64 * 1024)


class Proxy:
    """Run with `async with Proxy(config) as proxy:` inside meshsim.live.run(); `proxy.address` is where it listens.

    A call goes to the cluster serving its gRPC service (the path's `/package.Service/`
    part); a call for any other service goes to the first cluster, whose replicas
    answer it (UNIMPLEMENTED, or reflection's answers).
    """

    def __init__(
        self,
        config: ProxyConfig,
        observer: Observer | None = None,
        admin_token: str | None = None,
        access_log: float = 0.0,
    ) -> None:
        """`admin_token`: the bearer token the admin endpoint (on `config.metrics_listen`) asks for;
        `access_log`: the share of calls logged one line each (0: none)."""
        if not config.clusters or not all(c.endpoints or c.discovery for c in config.clusters):
            raise ProxyConfigError("the proxy needs replica endpoints or a way to discover them")
        if config.metrics_listen is not None:
            check_listen(config.metrics_listen, admin_token, "the admin endpoint")
        self.config = config
        self.observer = observer or Observer()
        self.address = ""
        self._server: grpc.aio.Server | None = None
        self._health = health.aio.HealthServicer()
        self._background = Background()
        self._host: HostHome | None = None
        self._upstreams: list[Upstream] = []
        self._by_service: dict[str, Upstream] = {}
        self._keys: dict[str, _CallKeys] = {}
        self._publishing: set[asyncio.Task[None]] = set()
        self._policies: dict[str, CallPolicies] = {}
        self._clients = _ClientShares(config.max_requests_per_client)
        self.certificates: ServerCertificates | None = None
        self.reflection = reflection.MergedReflection(())
        self.shapes = reflection.MethodShapes(cluster.service for cluster in config.clusters)
        self.metrics: MeshMetrics | None = None
        self.metrics_address = ""
        self._admin_token = admin_token
        self.recorder: CallRecorder | None = None
        self.tracing: Tracing | None = None
        self._access = AccessLog(access_log)
        self.faults: FaultFilter | None = None
        self.board: FaultBoard | None = None
        self.listening = False

    def _upstream(self, cluster: Cluster) -> Upstream:
        config = self.config
        certificates = None
        if cluster.tls:
            if config.mtls is None:
                raise ProxyConfigError(f"{cluster.label}: TLS to the replicas needs the mtls files")
            mtls = config.mtls
            certificates = ClientCertificates(TlsFiles(mtls.ca, mtls.client_cert, mtls.client_key), mtls.drain)
        return Upstream(
            f"{config.name}/{cluster.label}" if len(config.clusters) > 1 else config.name,
            cluster.service,
            cluster.endpoints,
            self.observer,
            balancer=config.balancer,
            health=config.health,
            outlier=config.outlier,
            policies=config.policies,
            discovery=cluster.discovery,
            certificates=certificates,
            channel_options=grpc_options(config, listener=False),
            host=self._host,
            weights=cluster.weight_of,
        )

    @property
    def upstreams(self) -> list[Upstream]:
        return list(self._upstreams)

    @property
    def balancers(self) -> list[Balancer]:
        return [upstream.balancer for upstream in self._upstreams]

    async def __aenter__(self) -> Proxy:
        config = self.config
        # The call path of proxied calls runs where grpc.aio hands them over: no call crosses loops.
        self._host = HostHome()
        # Bind first: a port that cannot be had is an error before anything is started.
        self._server = server = grpc.aio.server(options=grpc_options(config, listener=True))
        health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
        server.add_generic_rpc_handlers((_ForwardEverything(self),))
        try:
            if config.mtls is None:
                port = server.add_insecure_port(config.listen)
            else:
                mtls = config.mtls
                self.certificates = ServerCertificates(TlsFiles(mtls.ca, mtls.server_cert, mtls.server_key))
                port = server.add_secure_port(config.listen, self.certificates.credentials())
        except RuntimeError:
            port = 0
        if port == 0:
            raise StartupError(f"the proxy cannot listen on {config.listen}")
        self.address = join_host_port(split_host_port(config.listen)[0], port)
        if config.record is not None:
            record = config.record
            assert self._host is not None
            try:
                self.recorder = CallRecorder.open(
                    record.path,
                    max_bytes=record.max_bytes,
                    max_calls=record.max_calls,
                    wall_clock=time.time,
                    clock=self._host.now,  # the call path's clock: calls end on the host loop
                    source=f"proxy {config.name}",
                )
            except CallLogError as error:
                raise StartupError(str(error)) from None
            self.recorder.listen(self.observer)
        self._upstreams = [self._upstream(cluster) for cluster in config.clusters]
        log_mesh_events(self.observer)
        self.tracing = Tracing.from_environment(config.name, config.tracing)
        self._by_service = {u.service: u for u in self._upstreams}
        self._keys = {u.service: _CallKeys(config.balancer, u.streams("keys")) for u in self._upstreams}
        self.reflection = reflection.MergedReflection(
            [reflection.Backend(u.service, u.any_channel) for u in self._upstreams]
        )
        nursery = await self._background.open()
        try:
            await self._run_inside(nursery, server)
        except BaseException:
            # The nursery closes outside any scope opened after it (trio requires it).
            await self._background.close()
            if self.recorder is not None:
                self.recorder.close()
            with trio.CancelScope(shield=True):
                await bridge.wait(server.stop(0))
                for upstream in self._upstreams:
                    await upstream.transport.close()
            raise
        return self

    async def _run_inside(self, nursery: trio.Nursery, server: grpc.aio.Server) -> None:
        """Everything that runs in the proxy's nursery, then the listener."""
        config = self.config
        supervisor = Supervisor(nursery, self.observer)
        for upstream in self._upstreams:
            await upstream.start(supervisor)
        if self.recorder is not None:
            nursery.start_soon(keep_flushing, self.recorder)
        self.faults = FaultFilter(self._upstreams, self._upstreams[0].streams("chaos"))
        for upstream in self._upstreams:
            upstream.transport.faults = self.faults
        if config.metrics_listen is not None:
            self.metrics = MeshMetrics(self.observer)
            self.metrics.watch(self._upstreams)
            self.board, chaos = fault_board(
                self.faults.scope(), self.metrics.registry, self.faults.apply, self.faults.clear, "proxy"
            )
            self.faults.on_injected = lambda kind: chaos.injected.labels(kind).inc()
            admin = AdminApp(ProxyAdmin(self, self.metrics.registry, self.board), self._admin_token)
            try:
                self.metrics_address = await nursery.start(serve_admin, admin, config.metrics_listen)
            except OSError as error:
                raise StartupError(
                    f"the proxy cannot serve metrics on {config.metrics_listen}: {error.strerror}"
                ) from None
        self.observer.subscribe(HealthChanged, self._health_changed)
        self.observer.subscribe(MembershipChanged, self._health_changed)
        # The first checks first (bounded: a replica that never answers is not waited for), so that
        # the first calls find replicas in and reflection a replica to ask.
        with trio.move_on_after(_WARM_UP):
            for upstream in self._upstreams:
                await upstream.warm()
        await self._learn_shapes()
        await bridge.wait(server.start())
        self.listening = True
        await self._publish_health()

    async def _learn_shapes(self) -> None:
        """Ask each service's replicas which of its methods are unary before the first call (a service
        whose replicas do not answer in time is learnt from its first call)."""
        learning = [self.shapes.ask(u.service, u.any_channel) for u in self._upstreams]
        with trio.move_on_after(2.0):
            for task in learning:
                if task is not None:
                    await bridge.wait(asyncio.shield(task))

    async def __aexit__(self, *exc_info: Any) -> bool | None:
        assert self._server is not None
        with trio.CancelScope(shield=True):
            # Health first, so that whoever checks it stops sending, then the listener (calls in
            # flight get the grace period), then the actors.
            await bridge.wait(self._health.enter_graceful_shutdown())
            await bridge.wait(self._server.stop(self.config.shutdown_grace))
        for upstream in self._upstreams:
            if upstream.channel is not None:
                upstream.channel.abort(StatusCode.UNAVAILABLE)
        try:
            return await self._background.close(*exc_info)
        finally:
            if self.recorder is not None:
                self.recorder.close()  # after the last call has ended
            if self.tracing is not None:
                self.tracing.shutdown()  # the spans still buffered go out
            with trio.CancelScope(shield=True):
                for upstream in self._upstreams:
                    await upstream.transport.close()

    def _health_changed(self, event: HealthChanged | MembershipChanged) -> None:
        # asyncio keeps only weak references to tasks: hold this one until it is done.
        task = asyncio.get_running_loop().create_task(self._publish_health())
        self._publishing.add(task)
        task.add_done_callback(self._publishing.discard)

    async def _publish_health(self) -> None:
        """Each service is SERVING while one of its replicas is healthy; the proxy as a whole ("")
        while every service is."""
        for upstream in self._upstreams:
            await self._health.set(upstream.service, serving_to_grpc(upstream.serving))
        everything = all(upstream.serving for upstream in self._upstreams)
        await self._health.set("", serving_to_grpc(everything))

    async def forward(
        self, method: str, requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[bytes]:
        """One call, on asyncio's side: hand it to the call path, then relay the attempt that answered."""
        with self._call_span(method, context) as trace:
            async for message in self._forward(method, requests, context, trace):
                yield message

    async def _forward(
        self,
        method: str,
        requests: AsyncIterator[bytes],
        context: grpc.aio.ServicerContext,
        trace: CallTrace | None,
    ) -> AsyncIterator[bytes]:
        metadata = await self._admit(context)
        upstream = self.route(method)
        await self._fault_filter(upstream, method, Pattern.BIDI, context, trace)
        client = self._clients.enter(context)
        replay = RequestReplay(self.config.retry_buffer)
        invocation = StreamInvocation(method, replay, metadata, trace=trace)
        reading = asyncio.ensure_future(replay.fill(requests))
        # A method reflection did not call unary may have any shape: it counts as bidi.
        call = self._call(upstream, method, Pattern.BIDI, context, invocation)

        def finished(event: RequestFinished) -> None:
            self._access(event, trace)
            invocation.ended(event)

        assert upstream.channel is not None
        invocation.started(upstream.channel.start(call, finished, self._policies_for(method)))
        attempt = None
        try:
            outcome = await invocation.outcome
            if isinstance(outcome, Unanswered):
                if outcome.trailing:
                    context.set_trailing_metadata(outcome.trailing)
                await context.abort(to_grpc(outcome.status), outcome.details)
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
            await context.abort(to_grpc(attempt.cancelled_with), attempt.details)
        finally:
            self._clients.leave(client)
            reading.cancel()
            if attempt is not None:
                attempt.call.cancel()
                attempt.report(_caller_gone(invocation.run))  # nothing if it was already reported
            _cancel(invocation.run)

    def route(self, method: str) -> Upstream:
        service = method[1:].split("/", 1)[0]
        return self._by_service.get(service) or self._upstreams[0]

    async def forward_unary(self, method: str, request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        """A method reflection says is unary: one request, one attempt's answer relayed (no replay buffer)."""
        with self._call_span(method, context) as trace:
            return await self._forward_unary(method, request, context, trace)

    async def _forward_unary(
        self, method: str, request: bytes, context: grpc.aio.ServicerContext, trace: CallTrace | None
    ) -> bytes:
        upstream = self.route(method)
        metadata = await self._admit(context)
        await self._fault_filter(upstream, method, Pattern.UNARY, context, trace)
        invocation = UnaryInvocation(method, request, metadata=metadata, relay=True, trace=trace)
        call = self._call(upstream, method, Pattern.UNARY, context, invocation)
        ended: asyncio.Future[RequestFinished] = asyncio.get_running_loop().create_future()

        def finished(event: RequestFinished) -> None:
            self._access(event, trace)
            if not ended.done():
                ended.set_result(event)

        assert upstream.channel is not None
        client = self._clients.enter(context)
        try:
            run = upstream.channel.start(call, finished, self._policies_for(method))
            try:
                event = await ended
            except asyncio.CancelledError:
                _cancel(run)  # the caller went away
                raise
        finally:
            self._clients.leave(client)
        attempt = run.handle
        if isinstance(attempt, LiveAttempt):
            if attempt.initial_metadata:
                await context.send_initial_metadata(attempt.initial_metadata)
            if attempt.trailing_metadata:
                context.set_trailing_metadata(attempt.trailing_metadata)
            if event.status is StatusCode.OK:
                response: bytes = attempt.response  # type: ignore[assignment]
                return response
        await context.abort(to_grpc(event.status), _details(event, attempt))
        raise AssertionError("context.abort raises")  # for the type checker: abort never returns

    @contextlib.contextmanager
    def _call_span(self, method: str, context: grpc.aio.ServicerContext) -> Iterator[CallTrace | None]:
        """A proxied call's span (None without tracing), ended as the handler ends: OK, UNKNOWN if it
        raised (what grpc answers then), its caller gone; a status set on the context wins."""
        if self.tracing is None:
            yield None
            return
        trace = self.tracing.received(method, context.invocation_metadata() or (), str(context.peer()))
        ended = StatusCode.CANCELLED  # unless it ends otherwise below
        try:
            yield trace
            ended = StatusCode.OK
        except Exception:
            ended = StatusCode.UNKNOWN
            raise
        finally:
            _end_trace(trace, context, ended)

    async def _fault_filter(
        self,
        upstream: Upstream,
        method: str,
        pattern: Pattern,
        context: grpc.aio.ServicerContext,
        trace: CallTrace | None = None,
    ) -> None:
        """Chaos on calls as they arrive (Envoy's fault filter): a delay, then perhaps an abort, which
        ends the call as a recorded call with the fault's status, no replica called. A call whose
        caller gives up during the delay is recorded too, as it ended: its deadline, or cancelled."""
        faults = self.faults
        if faults is None:
            return
        fault = faults.on_call(method, context.invocation_metadata() or ())
        if fault is None:
            return
        assert self._host is not None
        started = self._host.now()

        def record(status: StatusCode) -> None:
            assert self._host is not None
            event = RequestFinished(
                upstream.label,
                upstream.service,
                None,
                pattern,
                status,
                started,
                self._host.now(),
                attempts=0,
                method=method,
            )
            self.observer.emit(event)
            self._access(event, trace)

        if fault.delay:
            remaining = context.time_remaining()
            try:
                await asyncio.sleep(fault.delay if remaining is None else min(fault.delay, max(0.0, remaining)))
            except asyncio.CancelledError:
                record(_caller_gone_by(context))
                raise
            if remaining is not None and remaining <= fault.delay:
                record(StatusCode.DEADLINE_EXCEEDED)
                await context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, "meshsim: deadline exceeded in a fault's delay")
        if fault.status is not None:
            record(fault.status)
            if fault.pushback is not None:
                context.set_trailing_metadata(((PUSHBACK_KEY, str(fault.pushback)),))
            await context.abort(to_grpc(fault.status), "meshsim: fault injected by the proxy")

    async def _admit(self, context: grpc.aio.ServicerContext) -> tuple[tuple[str, Any], ...]:
        """The metadata a call carries on to a replica, once the call is let in: a call whose
        metadata is over the limit, or from a client over its share, is refused here, saying why."""
        received = context.invocation_metadata() or ()
        # As HTTP/2 counts a header list: each entry's name and value, and 32 bytes.
        size = sum(len(key) + len(value) + 32 for key, value in received)
        limit = self.config.max_metadata_bytes
        if size > limit:
            await context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"meshsim: the request metadata is {size} bytes, over the proxy's limit of {limit}",
            )
        if self._clients.full(context):
            await context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"meshsim: this client has {self.config.max_requests_per_client} calls in progress, its share",
            )
        return tuple((key, value) for key, value in received if key not in _HOP_HEADERS)

    def _policies_for(self, method: str) -> CallPolicies:
        """The retry or hedging policy for `method`: a policy names the methods it covers by their short
        name or full path; one that names none covers every method (the proxy knows no .proto)."""
        policies = self._policies.get(method)
        if policies is None:
            retry, hedging = self.config.policies.for_method(method)
            # Settled for this method: whatever pattern the call is forwarded as, these apply.
            policies = CallPolicies(
                retry=None if retry is None else attrs.evolve(retry, methods=None),
                hedging=None if hedging is None else attrs.evolve(hedging, methods=None),
            )
            if len(self._policies) >= _POLICY_CACHE_SIZE:
                self._policies.clear()
            self._policies[method] = policies
        return policies

    def _call(
        self, upstream: Upstream, method: str, pattern: Pattern, context: grpc.aio.ServicerContext, payload: object
    ) -> CallSpec:
        """A proxied call as the call path sees it: the caller's deadline travels with it, and its
        hash key is taken from its metadata."""
        return CallSpec(
            client=upstream.label,
            service=upstream.service,
            pattern=pattern,
            key=self._keys[upstream.service].of(context.invocation_metadata() or ()),
            deadline=context.time_remaining(),
            method=method,
            payload=payload,
        )


class _CallKeys:
    """Where a proxied call's hash key comes from: the value of the `hash_header` request header
    (gRFC A76's `request_hash_header`, Envoy's header `hash_policy`; several values joined with
    ","). A call without it, or every call when no header is configured, gets a random key of its
    own (A76's random hash) under a policy that picks by key: a proxy has no other key to give,
    and the empty key would send every such call to the one replica that owns it."""

    def __init__(self, balancer: BalancerConfig, rng: random.Random) -> None:
        self.header = balancer.hash_header
        policy = REGISTERED.get(balancer.policy)
        self._random = policy is not None and policy.keyed
        self._rng = rng

    def of(self, metadata: Sequence[tuple[str, str | bytes]]) -> str | None:
        header = self.header
        if header is not None:
            values = [value for name, value in metadata if name == header and isinstance(value, str)]
            if values:
                return ",".join(values)
        if self._random:
            return f"{self._rng.getrandbits(64):016x}"
        return None


def _end_trace(trace: CallTrace, context: grpc.aio.ServicerContext, ended: StatusCode) -> None:
    """End a proxied call's span with the status its caller got: the one set on its context (an
    abort), else how the handler ended (OK; UNKNOWN if it raised; its caller gone, CANCELLED or
    its deadline)."""
    code = context.code()
    if code is not None and code != grpc.StatusCode.OK:
        trace.end(from_grpc(code), context.details() or "")
    elif ended is StatusCode.CANCELLED:
        trace.end(_caller_gone_by(context))
    else:
        trace.end(ended)


def _details(event: RequestFinished, attempt: object) -> str:
    if isinstance(attempt, LiveAttempt) and attempt.details:
        return attempt.details
    return unanswered_details(event)


def _caller_gone_by(context: grpc.aio.ServicerContext) -> StatusCode:
    """How a call its caller left before it was sent ends: its deadline, or cancelled."""
    remaining = context.time_remaining()
    return (
        StatusCode.DEADLINE_EXCEEDED if remaining is not None and remaining <= _DEADLINE_SLACK else StatusCode.CANCELLED
    )


def _caller_gone(run: CallRun | None) -> StatusCode:
    """How a proxied call ends when its caller's side is over: CANCELLED, or DEADLINE_EXCEEDED when
    the caller's deadline is what ended it, so that a call that ran out of time on a replica is a
    failure of that replica for outlier detection and breakers, as its attempts' own timeouts are."""
    deadline = None if run is None else run.deadline_at
    # grpc cancels the handler when the caller's deadline passes, at about the time the attempt's
    # own deadline (the same one) would have ended it.
    if run is not None and deadline is not None and run.channel.timers.now() >= deadline - _DEADLINE_SLACK:
        return StatusCode.DEADLINE_EXCEEDED
    return StatusCode.CANCELLED


def _cancel(run: CallRun | None) -> None:
    """The proxied call is over on the caller's side: a call still going ends as `_caller_gone` says."""
    if run is None or run.done:
        return
    status = _caller_gone(run)
    run.finish(status, cancel_with=status)


class _ClientShares:
    """Calls in progress per client address (its IP, over all its connections), so that one client
    cannot hold every slot of the concurrency limit and turn the others away. Off without a limit."""

    def __init__(self, limit: int | None) -> None:
        self.limit = limit
        self._calls: dict[str, int] = {}

    @staticmethod
    def _client(context: grpc.aio.ServicerContext) -> str:
        # "ipv4:10.0.0.5:53120" or "ipv6:[::1]:53120": the connection's port is not the client.
        return str(context.peer()).rpartition(":")[0]

    def full(self, context: grpc.aio.ServicerContext) -> bool:
        return self.limit is not None and self._calls.get(self._client(context), 0) >= self.limit

    def enter(self, context: grpc.aio.ServicerContext) -> str | None:
        if self.limit is None:
            return None
        client = self._client(context)
        self._calls[client] = self._calls.get(client, 0) + 1
        return client

    def leave(self, client: str | None) -> None:
        if client is None:
            return
        left = self._calls[client] - 1
        if left:
            self._calls[client] = left
        else:
            del self._calls[client]


class _ForwardEverything(grpc.GenericRpcHandler):
    def __init__(self, proxy: Proxy) -> None:
        self._proxy = proxy
        # grpc asks for a handler on every call: the settled ones (unary, reflection) are kept.
        self._settled: dict[str, grpc.RpcMethodHandler] = {}

    def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        method = details.method
        handler = self._settled.get(method)
        if handler is None:
            handler = self._handler(method)
        return handler

    def _handler(self, method: str) -> grpc.RpcMethodHandler:
        proxy = self._proxy

        async def handle(requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
            async for message in proxy.forward(method, requests, context):
                yield message

        async def reflect(requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
            async for message in proxy.reflection.answer(method, requests):
                yield message

        async def unary(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
            return await proxy.forward_unary(method, request, context)

        if method in reflection.METHODS:
            return self._settle(method, grpc.stream_stream_rpc_method_handler(reflect))
        if proxy.shapes.is_unary(method):
            return self._settle(method, grpc.unary_unary_rpc_method_handler(unary))
        # Not known to be unary (yet): a stream carries any shape, and the next call may know better.
        service = method[1:].split("/", 1)[0]
        proxy.shapes.ask(service, proxy.route(method).any_channel)
        return grpc.stream_stream_rpc_method_handler(handle)

    def _settle(self, method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        if len(self._settled) >= _POLICY_CACHE_SIZE:
            self._settled.clear()
        self._settled[method] = handler
        return handler
