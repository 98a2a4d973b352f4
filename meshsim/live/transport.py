"""The live transport: the runtime's Transport over grpc.aio channels, one per replica.

Each attempt is a grpc.aio call started on the host asyncio loop; its end comes back
to Trio through the bridge and becomes the runtime's on_done, so a live call, like a
simulated one, costs no Trio task. Errors are translated at this seam: the mesh logic
only ever sees meshsim's StatusCode and HealthStatus.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping

import attrs
import grpc
import trio
from grpc_health.v1 import health_pb2, health_pb2_grpc

from meshsim.core.calls import CallSpec
from meshsim.core.status import HealthStatus, StatusCode
from meshsim.live import bridge
from meshsim.runtime.transport import OnDone, WatchUnsupported

PUSHBACK_KEY = "grpc-retry-pushback-ms"


@attrs.frozen
class UnaryInvocation:
    """The payload of a live unary call: which method, what to send, how to (de)serialise."""

    path: str
    request: object
    serializer: Callable[[object], bytes] | None = None
    deserializer: Callable[[bytes], object] | None = None
    metadata: tuple[tuple[str, str], ...] = ()


def status_of(error: grpc.aio.AioRpcError) -> StatusCode:
    return StatusCode(error.code().value[0])


def pushback_of(error: grpc.aio.AioRpcError) -> int | None:
    for key, value in error.trailing_metadata() or ():
        if key == PUSHBACK_KEY:
            try:
                return int(value)
            except ValueError:
                return -1  # A6: an unparsable pushback means do not retry
    return None


class LiveAttempt:
    """The handle of one live attempt: cancel it, or read its response once it ended OK."""

    def __init__(self) -> None:
        self.response: object = None
        self.details = ""
        self.cancelled_with: StatusCode | None = None
        self.future: asyncio.Future[object] | None = None

    def cancel(self, status: StatusCode) -> None:
        if self.future is not None and not self.future.done():
            self.cancelled_with = status
            self.future.cancel()


class LiveTransport:
    def __init__(self, channels: Mapping[str, grpc.aio.Channel]) -> None:
        self.channels = dict(channels)

    def start_call(self, endpoint: str, call: CallSpec, deadline_at: float | None, on_done: OnDone) -> LiveAttempt:
        invocation = call.payload
        if not isinstance(invocation, UnaryInvocation):
            raise TypeError("the live transport carries unary calls through the mesh; streams go direct")
        timeout = None if deadline_at is None else max(0.0, deadline_at - trio.current_time())
        method = self.channels[endpoint].unary_unary(
            invocation.path,
            request_serializer=invocation.serializer,
            response_deserializer=invocation.deserializer,
        )
        attempt = LiveAttempt()

        def finished(future: asyncio.Future[object]) -> None:
            if attempt.cancelled_with is not None:
                attempt.details = "cancelled by meshsim"
                on_done(attempt.cancelled_with, None)
                return
            error = future.exception()
            if error is None:
                attempt.response = future.result()
                on_done(StatusCode.OK, None)
            elif isinstance(error, grpc.aio.AioRpcError):
                attempt.details = error.details() or ""
                on_done(status_of(error), pushback_of(error))
            else:
                attempt.details = f"{type(error).__name__}: {error}"
                on_done(StatusCode.INTERNAL, None)

        attempt.future = bridge.start(
            method(invocation.request, timeout=timeout, metadata=invocation.metadata or None), finished
        )
        return attempt

    async def check_health(self, endpoint: str, service: str) -> HealthStatus:
        stub = health_pb2_grpc.HealthStub(self.channels[endpoint])
        try:
            answer = await bridge.wait(stub.Check(health_pb2.HealthCheckRequest(service=service)))
        except grpc.aio.AioRpcError as error:
            if error.code() == grpc.StatusCode.NOT_FOUND:
                return HealthStatus.SERVICE_UNKNOWN
            return HealthStatus.UNREACHABLE
        return _serving_status(answer.status)

    async def watch_health(self, endpoint: str, service: str) -> AsyncIterator[HealthStatus]:
        call = health_pb2_grpc.HealthStub(self.channels[endpoint]).Watch(health_pb2.HealthCheckRequest(service=service))
        try:
            while True:
                try:
                    answer = await bridge.wait(call.read())
                except grpc.aio.AioRpcError as error:
                    if error.code() == grpc.StatusCode.UNIMPLEMENTED:
                        raise WatchUnsupported(endpoint) from None
                    return
                if answer is grpc.aio.EOF:
                    return
                yield _serving_status(answer.status)
        finally:
            call.cancel()

    async def close(self) -> None:
        for channel in self.channels.values():
            await bridge.wait(channel.close())


def _serving_status(status: int) -> HealthStatus:
    serving = health_pb2.HealthCheckResponse
    return {
        serving.SERVING: HealthStatus.SERVING,
        serving.SERVICE_UNKNOWN: HealthStatus.SERVICE_UNKNOWN,
    }.get(status, HealthStatus.NOT_SERVING)
