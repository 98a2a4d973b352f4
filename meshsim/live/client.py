"""`GrpcClient`: a Trio-native gRPC client with meshsim's balancing, health checks and call policies.

    async def main():
        async with GrpcClient("mesh.v1.MeshService", endpoints=["127.0.0.1:50051", "127.0.0.1:50052"],
                              retry_policy=RetryPolicy(max_attempts=3)) as client:
            reply = await client.Process(ProcessRequest(request_id="req-123", data="test data"))

    meshsim.live.run(main)

Unary calls go through the mesh: the balancer's picker, retries or hedging, deadlines,
breakers and outlier detection, exactly as in the simulator. Streaming calls are sent to
one replica the picker chooses and are not retried (a stream may have delivered
messages already; A6 would retry only before the first, which is the proxy's job).
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterable, AsyncIterator, Sequence
from types import TracebackType
from typing import Any

import grpc
import trio

from meshsim.core.calls import CallSpec, Pattern
from meshsim.core.endpoint import Endpoint
from meshsim.core.health import HealthConfig
from meshsim.core.outlier import OutlierConfig
from meshsim.core.pickers import BalancerConfig
from meshsim.core.policies import CallPolicies
from meshsim.core.retry import HedgingPolicy, RetryPolicy
from meshsim.core.status import StatusCode
from meshsim.live import bridge
from meshsim.live.servicer import SERVICE_NAME
from meshsim.live.transport import LiveAttempt, LiveTransport, UnaryInvocation, status_of
from meshsim.pb.v1 import mesh_pb2
from meshsim.runtime.actor import Supervisor
from meshsim.runtime.balancer import Balancer, OutlierSweeper
from meshsim.runtime.channel import MeshChannel, record_direct_call
from meshsim.runtime.health_checker import HealthChecker
from meshsim.runtime.observer import Observer
from meshsim.runtime.timers import TimerQueue


class RpcError(Exception):
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
        service_name: str = SERVICE_NAME,
        endpoints: Sequence[str] = (),
        *,
        policy: str | BalancerConfig = "round_robin",
        retry_policy: RetryPolicy | None = None,
        hedging_policy: HedgingPolicy | None = None,
        health: HealthConfig | None = None,
        outlier_detection: OutlierConfig | None = None,
        name: str = "client",
        channel_options: Sequence[tuple[str, Any]] = (),
        observer: Observer | None = None,
        seed: int | None = None,
    ) -> None:
        if not endpoints:
            raise ValueError("GrpcClient needs at least one endpoint (host:port)")
        self.service_name = service_name
        self.endpoints = tuple(endpoints)
        self.balancer_config = policy if isinstance(policy, BalancerConfig) else BalancerConfig(policy=policy)
        self.policies = CallPolicies(retry=retry_policy, hedging=hedging_policy)
        self.health = health if health is not None else HealthConfig(interval=1.0, timeout=0.5)
        self.outlier = outlier_detection
        self.name = name
        self.channel_options = tuple(channel_options)
        self.observer = observer or Observer()
        self._rng = random.Random(seed)
        self._nursery_manager: Any = None
        self._nursery: trio.Nursery | None = None
        self._transport: LiveTransport | None = None
        self._channel: MeshChannel | None = None

    # --- lifetime -----------------------------------------------------------------

    async def __aenter__(self) -> GrpcClient:
        channels = {e: grpc.aio.insecure_channel(e, options=self.channel_options) for e in self.endpoints}
        self._transport = transport = LiveTransport(channels)
        self._nursery_manager = trio.open_nursery()
        self._nursery = nursery = await self._nursery_manager.__aenter__()
        supervisor = Supervisor(nursery, self.observer)
        timers = TimerQueue()
        supervisor.start(timers)
        endpoints = [Endpoint(name, index=i) for i, name in enumerate(self.endpoints)]
        balancer = Balancer(
            f"balancer:{self.name}",
            self.name,
            self.service_name,
            self.balancer_config,
            self.health,
            endpoints,
            random.Random(self._rng.random()),
            self.observer,
            self.outlier,
        )
        supervisor.start(balancer)
        if self.health.enabled:
            service = self.health.service if self.health.service is not None else self.service_name
            for endpoint in endpoints:
                checker_name = f"health:{self.name}:{endpoint.name}"
                checker = HealthChecker(
                    checker_name,
                    endpoint.name,
                    service,
                    self.health,
                    transport,
                    balancer.mailbox,
                    random.Random(self._rng.random()),
                )
                supervisor.start(checker)
        if self.outlier is not None:
            supervisor.start(OutlierSweeper(f"outliers:{self.name}", self.outlier.interval, balancer.mailbox))
        self._channel = MeshChannel(
            self.name,
            self.service_name,
            balancer,
            transport,
            self.observer,
            timers,
            self.policies,
            random.Random(self._rng.random()),
        )
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> bool | None:
        assert self._nursery is not None and self._transport is not None and self._channel is not None
        self._channel.abort(StatusCode.CANCELLED)
        self._nursery.cancel_scope.cancel()
        try:
            return bool(await self._nursery_manager.__aexit__(kind, error, traceback))
        finally:
            with trio.CancelScope(shield=True):
                await self._transport.close()

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
        types = _MESH_TYPES.get(method) if self.service_name == SERVICE_NAME else None
        invocation = UnaryInvocation(
            path=path,
            request=request,
            serializer=_serializer(request),
            deserializer=None if types is None else types[1].FromString,
            metadata=tuple(metadata),
        )
        call = CallSpec(
            client=self.name,
            service=self.service_name,
            pattern=Pattern.UNARY,
            key=key,
            deadline=timeout,
            payload=invocation,
        )
        event, run = await self.channel.call(call, policies)
        if event.status is StatusCode.OK:
            assert isinstance(run.handle, LiveAttempt)
            return run.handle.response
        details = run.handle.details if isinstance(run.handle, LiveAttempt) else "no replica available"
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

    # --- streams, to one picked replica --------------------------------------------------

    async def StreamEvents(
        self, request: mesh_pb2.StreamRequest, *, timeout: float | None = None
    ) -> AsyncIterator[mesh_pb2.Event]:
        async with _StreamScope(self, Pattern.SERVER_STREAM) as (channel, record):
            call = channel.unary_stream(
                f"/{self.service_name}/StreamEvents",
                request_serializer=_serializer(request),
                response_deserializer=mesh_pb2.Event.FromString,
            )(request, timeout=timeout)
            async for message in _read_all(call, record):
                yield message

    async def CollectMetrics(
        self, requests: AsyncIterable[mesh_pb2.Metric], *, timeout: float | None = None
    ) -> mesh_pb2.MetricsSummary:
        async with _StreamScope(self, Pattern.CLIENT_STREAM) as (channel, record):
            call = channel.stream_unary(
                f"/{self.service_name}/CollectMetrics",
                request_serializer=mesh_pb2.Metric.SerializeToString,
                response_deserializer=mesh_pb2.MetricsSummary.FromString,
            )(timeout=timeout)
            try:
                await _send_all(call, requests)
                summary = await bridge.wait(call)
            except grpc.aio.AioRpcError as error:
                record(status_of(error))
                raise RpcError(status_of(error), error.details() or "") from None
            finally:
                call.cancel()
            record(StatusCode.OK)
            result: mesh_pb2.MetricsSummary = summary
            return result

    async def Chat(
        self, requests: AsyncIterable[mesh_pb2.ChatMessage], *, timeout: float | None = None
    ) -> AsyncIterator[mesh_pb2.ChatMessage]:
        async with _StreamScope(self, Pattern.BIDI) as (channel, record):
            call = channel.stream_stream(
                f"/{self.service_name}/Chat",
                request_serializer=mesh_pb2.ChatMessage.SerializeToString,
                response_deserializer=mesh_pb2.ChatMessage.FromString,
            )(timeout=timeout)

            assert self._nursery is not None
            self._nursery.start_soon(_send_all, call, requests)
            async for message in _read_all(call, record):
                yield message


class _StreamScope:
    """Picks a replica for one stream, counts it in flight, and records how the stream ended."""

    def __init__(self, client: GrpcClient, pattern: Pattern) -> None:
        self.client = client
        self.pattern = pattern
        self.status: StatusCode | None = None
        self.endpoint: Endpoint | None = None
        self.started = 0.0

    def record(self, status: StatusCode) -> None:
        if self.status is None:
            self.status = status

    async def __aenter__(self) -> tuple[grpc.aio.Channel, Any]:
        channel = self.client.channel
        self.started = trio.current_time()
        self.endpoint = channel.pick(None, [])
        if self.endpoint is None:
            self._emit(None, StatusCode.UNAVAILABLE)
            raise RpcError(StatusCode.UNAVAILABLE, "no replica available")
        self.endpoint.in_flight += 1
        assert self.client._transport is not None
        return self.client._transport.channels[self.endpoint.name], self.record

    async def __aexit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: Any) -> None:
        assert self.endpoint is not None
        self.endpoint.in_flight -= 1
        if self.status is None:
            self.status = StatusCode.CANCELLED if error is not None else StatusCode.OK
        self._emit(self.endpoint, self.status)

    def _emit(self, endpoint: Endpoint | None, status: StatusCode) -> None:
        client = self.client
        record_direct_call(
            client.channel.balancer,
            client.observer,
            client.name,
            self.pattern,
            endpoint,
            status,
            self.started,
            trio.current_time(),
        )


async def _send_all(call: Any, requests: AsyncIterable[Any]) -> None:
    """Write every request of a client stream, then half-close it."""
    async for message in requests:
        await bridge.wait(call.write(message))
    await bridge.wait(call.done_writing())


async def _read_all(call: Any, record: Any) -> AsyncIterator[Any]:
    try:
        while True:
            message = await bridge.wait(call.read())
            if message is grpc.aio.EOF:
                break
            yield message
    except grpc.aio.AioRpcError as error:
        record(status_of(error))
        raise RpcError(status_of(error), error.details() or "") from None
    finally:
        call.cancel()
    record(StatusCode.OK)


def _serializer(request: Any) -> Any:
    return None if isinstance(request, bytes) else type(request).SerializeToString
