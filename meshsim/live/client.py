"""`GrpcClient`: a Trio-native gRPC client with meshsim's balancing, health checks and call policies.

    async def main():
        async with GrpcClient("mesh.v1.MeshService", endpoints=["127.0.0.1:50051", "127.0.0.1:50052"],
                              retry_policy=RetryPolicy(max_attempts=3)) as client:
            reply = await client.Process(ProcessRequest(request_id="req-123", data="test data"))

    meshsim.live.run(main)

Every call goes through the mesh: the balancer's picker, retries or hedging, deadlines,
breakers and outlier detection, exactly as in the simulator. A streaming call may be
retried or hedged until its first response headers arrive (A6's commit); from then on
it stays with the replica that answered.
"""

from __future__ import annotations

import contextlib
import random
import time
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import attrs
import grpc
import trio

from meshsim.core.call_log import CallRecorder, RecordConfig
from meshsim.core.calls import MESH_SERVICE, CallSpec, Pattern
from meshsim.core.errors import ConfigError, MeshsimError
from meshsim.core.health import HealthConfig
from meshsim.core.outlier import OutlierConfig
from meshsim.core.pickers import POLICIES, BalancerConfig
from meshsim.core.policies import CallPolicies
from meshsim.core.retry import HedgingPolicy, RetryPolicy
from meshsim.core.status import StatusCode
from meshsim.live import bridge
from meshsim.live.config import ALGORITHMS, Discovery, weights_problem
from meshsim.live.event_log import log_mesh_events
from meshsim.live.recording import keep_flushing
from meshsim.live.security import ROTATION_DRAIN, ClientCertificates
from meshsim.live.status import status_of
from meshsim.live.streams import RequestReplay, StreamAttempt, StreamInvocation, Unanswered
from meshsim.live.tracing import Tracing
from meshsim.live.transport import LiveAttempt, LiveTransport, UnaryInvocation
from meshsim.live.upstream import Upstream
from meshsim.pb.v1 import mesh_pb2
from meshsim.runtime.actor import Background, Supervisor
from meshsim.runtime.channel import MeshChannel
from meshsim.runtime.observer import Observer
from meshsim.runtime.timers import TimerQueue
from meshsim.tls.material import TlsFiles

# How long entering a GrpcClient waits for its replicas' first health checks.
WARM_UP = 2.0


class RpcError(MeshsimError):
    """A call ended with a status other than OK."""

    def __init__(self, status: StatusCode, details: str = "") -> None:
        super().__init__(f"{status.name}: {details}" if details else status.name)
        self.status = status
        self.details = details


_MESH_TYPES: dict[str, tuple[Any, Any]] = {
    "Process": (mesh_pb2.ProcessRequest, mesh_pb2.ProcessResponse),
    "StreamEvents": (mesh_pb2.StreamRequest, mesh_pb2.Event),
    "CollectMetrics": (mesh_pb2.Metric, mesh_pb2.MetricsSummary),
    "Chat": (mesh_pb2.ChatMessage, mesh_pb2.ChatMessage),
}


class GrpcClient:
    def __init__(
        self,
        service_name: str = MESH_SERVICE,
        endpoints: Sequence[str] = (),
        *,
        policy: str | BalancerConfig = "round_robin",
        weights: Sequence[int] | None = None,
        retry_policy: RetryPolicy | None = None,
        hedging_policy: HedgingPolicy | None = None,
        policies: CallPolicies | None = None,
        health: HealthConfig | None = None,
        outlier_detection: OutlierConfig | None = None,
        name: str = "client",
        channel_options: Sequence[tuple[str, Any]] = (),
        observer: Observer | None = None,
        seed: int | None = None,
        tls: TlsFiles | None = None,
        discovery: Discovery | None = None,
        rotation_drain: float = ROTATION_DRAIN,
        record: str | Path | RecordConfig | CallRecorder | None = None,
        tracing: Tracing | None = None,
    ) -> None:
        """`policy`: an LB policy's name (or its YAML alias: "weighted", "ring_hash", ...) or a whole
        BalancerConfig; `weights`: one per endpoint, in order (none: all 1), for the policies that
        weigh. `policies`: every call policy at once (retries or hedging, throttle, budget, breakers,
        limits); `retry_policy` and `hedging_policy` are shorthands for the first two.
        `tls`: mTLS with this client pair and CA (`TlsFiles.in_dir("certs", "client")`); files that
        change while the client runs are picked up by new connections, and calls on the old ones
        have `rotation_drain` seconds to finish. `discovery`: where to find the endpoints
        (DnsDiscovery, FileDiscovery), re-resolved while the client runs. `record`: record every
        call for `meshsim replay` (docs/replay.md): a path or a RecordConfig (the client writes the
        file while it is open), or a CallRecorder of the caller's, which it only adds its calls to.
        `tracing`: where its spans go (live/tracing.py); by default the OTEL_* variables decide,
        and without them the client makes no spans."""
        if not endpoints and discovery is None:
            raise ConfigError("GrpcClient needs at least one endpoint (host:port) or a discovery source")
        self.discovery = discovery
        self.service_name = service_name
        self.endpoints = tuple(endpoints)
        self.balancer_config = _balancer(policy)
        problem = weights_problem(self.endpoints, tuple(weights or ()), discovery)
        if problem is not None:
            raise ConfigError(f"GrpcClient {problem[0]}: {problem[1]}")
        self.weights = dict(zip(self.endpoints, weights or (), strict=False))
        if policies is not None and (retry_policy is not None or hedging_policy is not None):
            raise ConfigError(
                "GrpcClient policies: give either policies or retry_policy and hedging_policy, not both "
                "(policies has retry and hedging of its own)"
            )
        self.policies = policies or CallPolicies(retry=retry_policy, hedging=hedging_policy)
        self.health = health if health is not None else HealthConfig(interval=1.0, timeout=0.5)
        self.outlier = outlier_detection
        self.name = name
        self.channel_options = tuple(channel_options)
        self.observer = observer or Observer()
        self._rng = random.Random(seed)
        # Checked now, so that a bad file is an error here and not a failed handshake later.
        self.certificates = None if tls is None else ClientCertificates(tls, rotation_drain)
        if isinstance(record, (str, Path)):
            record = RecordConfig(Path(record))
        self.record = record
        self._recorder: CallRecorder | None = None
        self.tracing = tracing
        self._own_tracing = False
        self._background = Background()
        self._transport: LiveTransport | None = None
        self._upstream: Upstream | None = None
        self._channel: MeshChannel | None = None

    # --- lifetime -----------------------------------------------------------------

    async def __aenter__(self) -> GrpcClient:
        if self.tracing is None:
            self.tracing = Tracing.from_environment(self.name)
            self._own_tracing = self.tracing is not None
        log_mesh_events(self.observer)  # to the "meshsim.mesh" logger, for programs that log
        if isinstance(self.record, RecordConfig):
            self._recorder = self.record.open(wall_clock=time.time, source=f"GrpcClient {self.name}")
            self._recorder.listen(self.observer)
        elif isinstance(self.record, CallRecorder):
            self.record.listen(self.observer)
        self._upstream = upstream = Upstream(
            self.name,
            self.service_name,
            self.endpoints,
            self.observer,
            balancer=self.balancer_config,
            health=self.health,
            outlier=self.outlier,
            policies=self.policies,
            discovery=self.discovery,
            certificates=self.certificates,
            channel_options=self.channel_options,
            seed=self._rng.random(),
            weights=self.weights,
        )
        self._transport = upstream.transport
        nursery = await self._background.open()
        try:
            if self._recorder is not None:
                nursery.start_soon(keep_flushing, self._recorder)  # a caller's own recorder is theirs
            supervisor = Supervisor(nursery, self.observer)
            timers = TimerQueue()
            supervisor.start(timers)
            self._channel = await upstream.start(supervisor, timers)
            # The replicas' first checks, as the proxy waits for them (bounded: one may never answer);
            # calls made before them would wait for them anyway.
            with trio.move_on_after(WARM_UP):
                await upstream.warm()
        except BaseException:
            # The nursery closes outside any scope opened after it (trio requires it).
            await self._background.close()
            with trio.CancelScope(shield=True):
                await upstream.transport.close()
            self._close_recording()
            raise
        return self

    def _close_recording(self) -> None:
        recorder, self._recorder = self._recorder, None
        if recorder is not None:
            recorder.close()

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> bool | None:
        assert self._transport is not None and self._channel is not None
        self._channel.abort(StatusCode.CANCELLED)
        try:
            return await self._background.close(kind, error, traceback)
        finally:
            try:
                with trio.CancelScope(shield=True):
                    await self._transport.close()
            finally:
                # After the last call has ended (aborted ones too), so the file holds every call.
                self._close_recording()
                if self._own_tracing and self.tracing is not None:
                    self.tracing.shutdown()
                    self.tracing, self._own_tracing = None, False

    @property
    def background(self) -> trio.Nursery:
        """Where the client's own tasks run (copying a caller's request stream)."""
        if self._background.nursery is None:
            raise RuntimeError("use GrpcClient in `async with`")
        return self._background.nursery

    @property
    def channel(self) -> MeshChannel:
        if self._channel is None:
            raise RuntimeError("use GrpcClient in `async with`")
        return self._channel

    # --- unary, through the mesh --------------------------------------------------------

    async def unary(
        self,
        method: str,
        request: Any,
        *,
        timeout: float | None = None,
        metadata: Sequence[tuple[str, str]] = (),
        key: str | None = None,
        policies: CallPolicies | None = None,
    ) -> Any:
        """Call `method` (a name of this service, or a full /package.Service/Method path)."""
        path = method if method.startswith("/") else f"/{self.service_name}/{method}"
        types = _MESH_TYPES.get(method) if self.service_name == MESH_SERVICE else None
        trace = None if self.tracing is None else self.tracing.sent(path)
        invocation = UnaryInvocation(
            path=path,
            request=request,
            serializer=_serializer(request),
            deserializer=None if types is None else types[1].FromString,
            metadata=tuple(metadata),
            trace=trace,
        )
        call = CallSpec(
            client=self.name,
            service=self.service_name,
            pattern=Pattern.UNARY,
            key=key,
            deadline=timeout,
            method=path,
            payload=invocation,
        )
        try:
            event, run = await self.channel.call(call, policies)
        except BaseException:
            if trace is not None:
                trace.end(StatusCode.CANCELLED)  # the caller went away
            raise
        details = ""
        if event.status is not StatusCode.OK:
            details = run.handle.details if isinstance(run.handle, LiveAttempt) else "no replica available"
        if trace is not None:
            trace.end(event.status, details)
        if event.status is StatusCode.OK:
            assert isinstance(run.handle, LiveAttempt)
            return run.handle.response
        raise RpcError(event.status, details)

    async def call_with_retry(
        self, method: str, request: Any, retry_policy: RetryPolicy | None = None, **options: Any
    ) -> Any:
        policy = retry_policy or self.policies.retry or RetryPolicy()
        return await self.unary(method, request, policies=CallPolicies(retry=policy), **options)

    async def call_with_hedging(
        self, method: str, request: Any, hedge_delay: float = 0.1, max_hedges: int = 2, **options: Any
    ) -> Any:
        """`max_hedges` extra attempts after the first, one every `hedge_delay` seconds."""
        policy = HedgingPolicy(max_attempts=1 + max_hedges, hedging_delay=hedge_delay)
        return await self.unary(method, request, policies=CallPolicies(hedging=policy), **options)

    async def Process(self, request: mesh_pb2.ProcessRequest, **options: Any) -> mesh_pb2.ProcessResponse:
        response: mesh_pb2.ProcessResponse = await self.unary("Process", request, **options)
        return response

    # --- streams, through the mesh until they answer ------------------------------------

    async def StreamEvents(
        self,
        request: mesh_pb2.StreamRequest,
        *,
        timeout: float | None = None,
        metadata: Metadata = (),
        key: str | None = None,
    ) -> AsyncIterator[mesh_pb2.Event]:
        stream = _MeshStream(self, "StreamEvents", Pattern.SERVER_STREAM, timeout, metadata, key)
        stream.requests.append(request)
        stream.requests.end()
        async with contextlib.aclosing(stream.responses()) as events:
            async for event in events:
                yield event

    async def CollectMetrics(
        self,
        requests: AsyncIterable[mesh_pb2.Metric],
        *,
        timeout: float | None = None,
        metadata: Metadata = (),
        key: str | None = None,
    ) -> mesh_pb2.MetricsSummary:
        stream = _MeshStream(self, "CollectMetrics", Pattern.CLIENT_STREAM, timeout, metadata, key)
        async with contextlib.aclosing(stream.responses(requests)) as summaries:
            answers = [summary async for summary in summaries]
        if len(answers) != 1:
            raise RpcError(StatusCode.INTERNAL, f"a client stream must answer once; the server sent {len(answers)}")
        summary: mesh_pb2.MetricsSummary = answers[0]
        return summary

    async def Chat(
        self,
        requests: AsyncIterable[mesh_pb2.ChatMessage],
        *,
        timeout: float | None = None,
        metadata: Metadata = (),
        key: str | None = None,
    ) -> AsyncIterator[mesh_pb2.ChatMessage]:
        stream = _MeshStream(self, "Chat", Pattern.BIDI, timeout, metadata, key)
        async with contextlib.aclosing(stream.responses(requests)) as answers:
            async for message in answers:
                yield message


Metadata = Sequence[tuple[str, str]]


class _MeshStream:
    """One streaming call through the mesh: retried or hedged until an attempt answers (its
    requests are replayed to each new attempt), then read from the attempt that answered."""

    def __init__(
        self,
        client: GrpcClient,
        method: str,
        pattern: Pattern,
        timeout: float | None,
        metadata: Metadata,
        key: str | None = None,
    ):
        self.client = client
        self.requests = RequestReplay(size=_size)
        types = _MESH_TYPES.get(method) if client.service_name == MESH_SERVICE else None
        path = f"/{client.service_name}/{method}"
        self.invocation = StreamInvocation(
            path,
            self.requests,
            tuple(metadata),
            serializer=_serialize,
            deserializer=None if types is None else types[1].FromString,
            trace=None if client.tracing is None else client.tracing.sent(path),
        )
        self.call = CallSpec(
            client=client.name,
            service=client.service_name,
            pattern=pattern,
            key=key,
            deadline=timeout,
            method=self.invocation.path,
            payload=self.invocation,
        )
        self.request_error: BaseException | None = None

    async def responses(self, requests: AsyncIterable[Any] | None = None) -> AsyncGenerator[Any, None]:
        client = self.client
        invocation = self.invocation
        run = client.channel.start(self.call, invocation.ended)
        invocation.started(run)
        sending = None
        attempt: StreamAttempt | None = None
        ended, details = StatusCode.CANCELLED, ""  # unless it ends otherwise below
        try:
            if requests is not None:
                sending = await client.background.start(self._send, requests)
            outcome = await bridge.wait(invocation.outcome)
            if isinstance(outcome, Unanswered):
                raise RpcError(outcome.status, self._details(outcome.details))
            attempt = outcome
            # Generators inside generators are closed here, not by the garbage collector.
            async with contextlib.aclosing(self._read(attempt)) as messages:
                async for message in messages:
                    yield message
            ended = StatusCode.OK
        except RpcError as error:
            ended, details = error.status, error.details
            raise
        finally:
            if invocation.trace is not None:
                invocation.trace.end(ended, details)
            if sending is not None:
                sending.cancel()
            if attempt is not None:
                attempt.cancel(StatusCode.CANCELLED)  # nothing if it already ended
            elif not run.done:
                run.finish(StatusCode.CANCELLED)

    async def _read(self, attempt: StreamAttempt) -> AsyncGenerator[Any, None]:
        call = attempt.call
        try:
            while True:
                message = await bridge.wait(call.read())
                if message is grpc.aio.EOF:
                    break
                yield message
        except grpc.aio.AioRpcError as error:
            attempt.report(status_of(error))
            raise RpcError(status_of(error), self._details(error.details() or "")) from None
        except bridge.HostCancelled:
            # The call path ended the attempt (the call's deadline, the client closing), or its
            # channel closed under it (drained after a reconnect).
            raise RpcError(attempt.cancelled_with or StatusCode.CANCELLED, self._details(attempt.details)) from None
        attempt.report(StatusCode.OK)

    async def _send(self, requests: AsyncIterable[Any], task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Copy the caller's requests into the replay (a task of the client's, so that a caller's
        slow iterator never holds up reading responses)."""
        with trio.CancelScope() as scope:
            task_status.started(scope)
            try:
                async for message in requests:
                    self.requests.append(message)
                    if self.requests.full:  # a slow replica slows the caller, as grpc's own writes do
                        await bridge.wait(self.requests.room())
            except Exception as error:  # the caller's iterator failed: the call cannot go on
                self.request_error = error
                run = self.invocation.run
                if run is not None and not run.done:
                    run.finish(StatusCode.CANCELLED, cancel_with=StatusCode.CANCELLED)
                return
            self.requests.end()

    def _details(self, details: str) -> str:
        if self.request_error is not None:
            return f"the request stream failed: {self.request_error!r}"
        return details


def _balancer(policy: str | BalancerConfig) -> BalancerConfig:
    """A policy named as a config file names it (with the YAML layout's aliases), checked now: a
    misspelt name is an error here, not a balancer that cannot build its picker later."""
    config = policy if isinstance(policy, BalancerConfig) else BalancerConfig(policy=policy)
    name = ALGORITHMS.get(config.policy)
    if name is None:
        raise ConfigError(f"GrpcClient policy: expected one of {', '.join(POLICIES)}, got {config.policy!r}")
    return attrs.evolve(config, policy=name)


def _serialize(message: Any) -> bytes:
    return message if isinstance(message, bytes) else bytes(message.SerializeToString())


def _size(message: Any) -> int:
    return len(message) if isinstance(message, bytes) else int(message.ByteSize())


def _serializer(request: Any) -> Any:
    return None if isinstance(request, bytes) else type(request).SerializeToString
