"""Request streams the live tests send: the seed description's CollectMetrics and Chat examples."""

from __future__ import annotations

from collections.abc import AsyncIterator

from meshsim.pb.v1 import mesh_pb2


async def metrics() -> AsyncIterator[mesh_pb2.Metric]:
    for value in (1.0, 2.0, 6.0):
        yield mesh_pb2.Metric(metric_name="cpu_usage", value=value)


async def chat() -> AsyncIterator[mesh_pb2.ChatMessage]:
    for n in range(3):
        yield mesh_pb2.ChatMessage(user_id="user-123", message=f"Message {n}")
