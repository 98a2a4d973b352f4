"""The demo mesh.v1.MeshService: one method per call pattern, with knobs to misbehave on purpose.

`ServerFaults` are the flags `meshsim serve` starts with (every call); `ReplicaFaults`
the chaos faults added over the admin API while it runs (demo/chaos.py), which act on
top of them: a latency fault multiplies the flag's latency, then adds its own.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Callable

import attrs
import grpc

from meshsim.core.calls import MESH_SERVICE
from meshsim.core.status import StatusCode
from meshsim.demo.chaos import ReplicaFaults
from meshsim.live.status import PUSHBACK_KEY, to_grpc
from meshsim.pb.v1 import mesh_pb2, mesh_pb2_grpc


@attrs.define
class ServerFaults:
    """What a replica does to every call: added latency and a share of errors (mutable: a test may
    make one replica of several slow)."""

    latency: float = 0.0
    error_rate: float = 0.0
    error_status: StatusCode = StatusCode.UNAVAILABLE


def _ignore(kinds: list[str]) -> None:
    pass


class MeshServicer(mesh_pb2_grpc.MeshServiceServicer):
    def __init__(
        self, replica: str, faults: ServerFaults, rng: random.Random | None = None, chaos: ReplicaFaults | None = None
    ) -> None:
        self.replica = replica
        self.faults = faults
        self._rng = rng or random.Random(replica)
        self.chaos = chaos if chaos is not None else ReplicaFaults(self._rng)
        # Calls that reached this servicer (the security tests check that refused peers add none).
        self.calls = 0
        # Calls a chaos fault acted on, by kind (the admin endpoint counts them).
        self.on_injected: Callable[[list[str]], None] = _ignore

    async def _misbehave(self, context: grpc.aio.ServicerContext, method: str) -> None:
        self.calls += 1
        faults = self.faults
        latency = faults.latency
        # (share, status, pushback ms, a chaos fault's): the flags' error first, then the faults'
        errors: list[tuple[float, StatusCode, int | None, bool]] = [
            (faults.error_rate, faults.error_status, None, False)
        ]
        if self.chaos.active:
            conditions, held, kinds = self.chaos.draw(f"/{MESH_SERVICE}/{method}")
            if kinds:
                self.on_injected(kinds)
            for lifted in held:
                await lifted.wait()  # a blackhole: the caller's deadline ends it first
            latency = latency * conditions.multiply + conditions.add
            errors += [(rate, status, pushback, True) for rate, status, pushback in conditions.errors]
        if latency > 0:
            await asyncio.sleep(latency)
        for rate, status, pushback, chaos in errors:
            if rate > 0 and self._rng.random() < rate:
                if chaos:
                    self.on_injected(["errors"])
                if pushback is not None:
                    context.set_trailing_metadata(((PUSHBACK_KEY, str(pushback)),))
                await context.abort(to_grpc(status), f"error injected by {self.replica}")

    async def Process(
        self, request: mesh_pb2.ProcessRequest, context: grpc.aio.ServicerContext
    ) -> mesh_pb2.ProcessResponse:
        remaining = context.time_remaining()
        await self._misbehave(context, "Process")
        return mesh_pb2.ProcessResponse(
            request_id=request.request_id,
            result=f"processed {len(request.data)} bytes",
            replica=self.replica,
            deadline_remaining_s=remaining or 0.0,
        )

    async def StreamEvents(
        self, request: mesh_pb2.StreamRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[mesh_pb2.Event]:
        await self._misbehave(context, "StreamEvents")
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
        await self._misbehave(context, "CollectMetrics")
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
            await self._misbehave(context, "Chat")
            yield mesh_pb2.ChatMessage(
                user_id=message.user_id, message=f"echo: {message.message}", replica=self.replica
            )
