"""mesh.v1.MeshService and grpc.health.v1 as a scenario's service behaves: the simulator's rules, for real.

Each call is served as a simulated replica serves it (sim/replica.py), with the same
random draws for the same purpose: a service time from the replica's latency
distribution (the service's, or its own from `[[service.replica]]`; per streamed message
from `message_latency`), under the replica's faults (`Conditions`: multiplied, then
lengthened); a share of calls failing with its error model and the faults' errors,
decided when service starts and answered after the same service time; at most `capacity` calls served at once, up to
`queue_limit` more waiting in arrival order and the rest refused RESOURCE_EXHAUSTED.
A server stream or bidi call sends its first message after the first service time
(committing the caller's call) and one more per message time; a failing one answers
with trailers only. A blackholed replica holds new calls and probes until the
blackhole lifts; the caller's deadline ends them first.
"""

from __future__ import annotations

import asyncio
import collections
import random
from collections.abc import AsyncIterator

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from meshsim.core.calls import MESH_SERVICE, Pattern
from meshsim.core.faults import Conditions
from meshsim.core.scenario import ServiceConfig
from meshsim.core.status import HealthStatus, StatusCode
from meshsim.live.status import PUSHBACK_KEY, to_grpc
from meshsim.pb.v1 import mesh_pb2, mesh_pb2_grpc


class _Full(Exception):
    """The replica's queue is full."""


class Capacity:
    """At most `capacity` calls in service, up to `queue_limit` waiting (FIFO), the rest refused."""

    def __init__(self, capacity: int | None, queue_limit: int | None) -> None:
        self._capacity = capacity
        self._queue_limit = queue_limit
        self._busy = 0
        self._waiting: collections.deque[asyncio.Future[None]] = collections.deque()

    async def enter(self) -> None:
        if self._capacity is None:
            return
        if self._busy < self._capacity and not self._waiting:
            self._busy += 1
            return
        if self._queue_limit is not None and len(self._waiting) >= self._queue_limit:
            raise _Full
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append(turn)
        try:
            await turn  # the slot is handed over by leave()
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled():
                self.leave()  # handed a slot as the caller went away: pass it on
            else:
                self._waiting.remove(turn)
            raise

    def leave(self) -> None:
        if self._capacity is None:
            return
        while self._waiting:
            turn = self._waiting.popleft()
            if not turn.done():
                turn.set_result(None)
                return
        self._busy -= 1


class ScenarioServicer(mesh_pb2_grpc.MeshServiceServicer):
    """`service` is the service as this replica serves it (`ServiceConfig.behaviour`): its own
    latency and error model where `[[service.replica]]` gives it one."""

    def __init__(self, replica: str, service: ServiceConfig, rng: random.Random) -> None:
        self.replica = replica
        self.service = service
        self._rng = rng
        self.conditions = Conditions()
        self.open = asyncio.Event()  # cleared while blackholed
        self.open.set()
        self._capacity = Capacity(service.capacity, service.queue_limit)

    def _plan(self, pattern: Pattern, messages: int) -> tuple[float, list[float], StatusCode, int | None]:
        """The first service time, each further message's, and the status (the simulator's draws)."""
        rng = self._rng
        service = self.service
        conditions = self.conditions
        first = service.latency.sample(rng)
        steps = [service.message_latency.sample(rng) for _ in range(messages)] if pattern is not Pattern.UNARY else []
        multiply, add = conditions.multiply, conditions.add
        status, pushback = StatusCode.OK, None
        injected = service.injected_error(rng)
        if injected is not None:
            status, pushback = injected, service.error_pushback_ms
        for rate, code, code_pushback in conditions.errors:
            if rng.random() < rate and status is StatusCode.OK:
                status, pushback = code, code_pushback
        return first * multiply + add, [step * multiply for step in steps], status, pushback

    async def _admit(self, context: grpc.aio.ServicerContext) -> None:
        await self.open.wait()
        try:
            await self._capacity.enter()
        except _Full:
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, f"{self.replica}: queue full")

    @staticmethod
    async def _fail(context: grpc.aio.ServicerContext, status: StatusCode, pushback: int | None, replica: str) -> None:
        if pushback is not None:
            context.set_trailing_metadata(((PUSHBACK_KEY, str(pushback)),))
        await context.abort(to_grpc(status), f"error injected by {replica}")

    async def Process(
        self, request: mesh_pb2.ProcessRequest, context: grpc.aio.ServicerContext
    ) -> mesh_pb2.ProcessResponse:
        await self._admit(context)
        try:
            first, _, status, pushback = self._plan(Pattern.UNARY, 1)
            await asyncio.sleep(first)
            if status is not StatusCode.OK:
                await self._fail(context, status, pushback, self.replica)
            return mesh_pb2.ProcessResponse(request_id=request.request_id, replica=self.replica)
        finally:
            self._capacity.leave()

    async def StreamEvents(
        self, request: mesh_pb2.StreamRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[mesh_pb2.Event]:
        await self._admit(context)
        try:
            first, steps, status, pushback = self._plan(Pattern.SERVER_STREAM, max(1, request.count))
            if status is not StatusCode.OK:
                await asyncio.sleep(first + sum(steps))
                await self._fail(context, status, pushback, self.replica)
            await asyncio.sleep(first)
            for sequence, step in enumerate(steps):
                if sequence:
                    await asyncio.sleep(step)
                yield mesh_pb2.Event(stream_id=request.stream_id, sequence=sequence, replica=self.replica)
            await asyncio.sleep(steps[0] if steps else 0.0)  # the first message's own time, as simulated
        finally:
            self._capacity.leave()

    async def CollectMetrics(
        self, request_iterator: AsyncIterator[mesh_pb2.Metric], context: grpc.aio.ServicerContext
    ) -> mesh_pb2.MetricsSummary:
        values = [metric.value async for metric in request_iterator]
        await self._admit(context)
        try:
            first, steps, status, pushback = self._plan(Pattern.CLIENT_STREAM, max(1, len(values)))
            await asyncio.sleep(first + sum(steps))
            if status is not StatusCode.OK:
                await self._fail(context, status, pushback, self.replica)
            return mesh_pb2.MetricsSummary(count=len(values), sum=sum(values), replica=self.replica)
        finally:
            self._capacity.leave()

    async def Chat(
        self, request_iterator: AsyncIterator[mesh_pb2.ChatMessage], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[mesh_pb2.ChatMessage]:
        messages = [message async for message in request_iterator]
        await self._admit(context)
        try:
            first, steps, status, pushback = self._plan(Pattern.BIDI, max(1, len(messages)))
            if status is not StatusCode.OK:
                await asyncio.sleep(first + sum(steps))
                await self._fail(context, status, pushback, self.replica)
            await asyncio.sleep(first)
            for index, message in enumerate(messages):
                if index:
                    await asyncio.sleep(steps[index - 1])
                yield mesh_pb2.ChatMessage(user_id=message.user_id, message=message.message, replica=self.replica)
            await asyncio.sleep(steps[-1] if steps else 0.0)
        finally:
            self._capacity.leave()


class ScenarioHealth(health_pb2_grpc.HealthServicer):
    """grpc.health.v1 as a simulated replica answers probes: SERVING for "", its scenario service's
    name and the gRPC service it serves (a client that knows it by that name, GrpcClient or the
    proxy, asks for that), SERVICE_UNKNOWN for any other name, a health fault's status while it lasts, nothing while
    blackholed; each answer after the service's probe latency under the latency faults."""

    def __init__(self, servicer: ScenarioServicer) -> None:
        self._servicer = servicer
        self._changed = asyncio.Event()

    def changed(self) -> None:
        """The replica's conditions changed: Watch streams send their status again if it moved."""
        self._changed.set()
        self._changed = asyncio.Event()

    def _status(self, service: str) -> HealthStatus:
        servicer = self._servicer
        if service not in ("", servicer.service.name, MESH_SERVICE):
            return HealthStatus.SERVICE_UNKNOWN
        return servicer.conditions.health or HealthStatus.SERVING

    async def _answer(self, service: str) -> health_pb2.HealthCheckResponse:
        servicer = self._servicer
        await servicer.open.wait()
        conditions = servicer.conditions
        await asyncio.sleep(servicer.service.probe_latency * conditions.multiply + conditions.add)
        return _RESPONSES[self._status(service)]

    async def Check(
        self, request: health_pb2.HealthCheckRequest, context: grpc.aio.ServicerContext
    ) -> health_pb2.HealthCheckResponse:
        return await self._answer(request.service)

    async def Watch(
        self, request: health_pb2.HealthCheckRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[health_pb2.HealthCheckResponse]:
        last = None
        while True:
            changed = self._changed
            answer = await self._answer(request.service)
            if answer is not last:
                yield answer
                last = answer
            await changed.wait()


_ANSWER = health_pb2.HealthCheckResponse
_RESPONSES = {
    HealthStatus.SERVING: _ANSWER(status=_ANSWER.SERVING),
    HealthStatus.NOT_SERVING: _ANSWER(status=_ANSWER.NOT_SERVING),
    HealthStatus.SERVICE_UNKNOWN: _ANSWER(status=_ANSWER.SERVICE_UNKNOWN),
}
