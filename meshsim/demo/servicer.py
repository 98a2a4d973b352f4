"""The demo mesh.v1.MeshService: one method per call pattern, with knobs to misbehave on purpose."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator

import attrs
import grpc

from meshsim.core.status import StatusCode
from meshsim.live.status import to_grpc
from meshsim.pb.v1 import mesh_pb2, mesh_pb2_grpc


@attrs.define
class ServerFaults:
    """What a replica does to every call: added latency and a share of errors.

    Mutable on purpose: live chaos will change these while the server runs.
    """

    latency: float = 0.0
    error_rate: float = 0.0
    error_status: StatusCode = StatusCode.UNAVAILABLE


class MeshServicer(mesh_pb2_grpc.MeshServiceServicer):
    def __init__(self, replica: str, faults: ServerFaults, rng: random.Random | None = None) -> None:
        self.replica = replica
        self.faults = faults
        self._rng = rng or random.Random(replica)
        # Calls that reached this servicer (the security tests check that refused peers add none).
        self.calls = 0

    async def _misbehave(self, context: grpc.aio.ServicerContext) -> None:
        self.calls += 1
        faults = self.faults
        if faults.latency > 0:
            await asyncio.sleep(faults.latency)
        if faults.error_rate > 0 and self._rng.random() < faults.error_rate:
            await context.abort(to_grpc(faults.error_status), f"error injected by {self.replica}")

    async def Process(
        self, request: mesh_pb2.ProcessRequest, context: grpc.aio.ServicerContext
    ) -> mesh_pb2.ProcessResponse:
        remaining = context.time_remaining()
        await self._misbehave(context)
        return mesh_pb2.ProcessResponse(
            request_id=request.request_id,
            result=f"processed {len(request.data)} bytes",
            replica=self.replica,
            deadline_remaining_s=remaining or 0.0,
        )

    async def StreamEvents(
        self, request: mesh_pb2.StreamRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[mesh_pb2.Event]:
        await self._misbehave(context)
        kinds = list(request.event_types) or ["event"]
        count = request.count or len(kinds)
        for sequence in range(count):
            yield mesh_pb2.Event(
                stream_id=request.stream_id,
                event_type=kinds[sequence % len(kinds)],
                sequence=sequence,
                replica=self.replica,
            )

    async def CollectMetrics(
        self, request_iterator: AsyncIterator[mesh_pb2.Metric], context: grpc.aio.ServicerContext
    ) -> mesh_pb2.MetricsSummary:
        values = [metric.value async for metric in request_iterator]
        await self._misbehave(context)
        if not values:
            return mesh_pb2.MetricsSummary(replica=self.replica)
        total = sum(values)
        return mesh_pb2.MetricsSummary(
            count=len(values),
            sum=total,
            min=min(values),
            max=max(values),
            mean=total / len(values),
            replica=self.replica,
        )

    async def Chat(
        self, request_iterator: AsyncIterator[mesh_pb2.ChatMessage], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[mesh_pb2.ChatMessage]:
        async for message in request_iterator:
            await self._misbehave(context)
            yield mesh_pb2.ChatMessage(
                user_id=message.user_id, message=f"echo: {message.message}", replica=self.replica
            )
