"""Server reflection for a proxy in front of several services: one answer from all of them.

With one cluster behind the proxy, reflection is routed to its replicas like any
other method. With several, each cluster's replicas know only their own services,
so the proxy answers itself: `list_services` is the union over the clusters (plus
grpc.health.v1.Health, which the proxy serves), and a question about a file or
symbol goes first to the cluster whose service name the symbol starts with, then to
the others, until one knows it. v1 and v1alpha share their messages on the wire, so
both are answered with the v1alpha types.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import grpc
from google.protobuf import descriptor_pb2
from grpc_reflection.v1alpha import reflection_pb2

METHODS = frozenset(
    {
        "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
        "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
    }
)
HEALTH_SERVICE = "grpc.health.v1.Health"


class Backend:
    """One cluster as reflection sees it: the service it routes, and a channel to a healthy replica."""

    def __init__(self, service: str, channel: Callable[[], grpc.aio.Channel | None]) -> None:
        self.service = service
        self.channel = channel


class MergedReflection:
    def __init__(self, backends: Sequence[Backend]) -> None:
        self._backends = list(backends)

    async def answer(self, method: str, requests: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        async for raw in requests:
            request = reflection_pb2.ServerReflectionRequest.FromString(raw)
            if request.WhichOneof("message_request") == "list_services":
                response = await self._list(method, request)
            else:
                response = await self._find(method, request)
            response.valid_host = request.host
            response.original_request.CopyFrom(request)
            yield response.SerializeToString()

    async def _list(self, method: str, request: Any) -> Any:
        names: dict[str, None] = {}
        for backend in self._backends:
            names[backend.service] = None
            answer = await _ask(backend, method, request)
            if answer is not None and answer.HasField("list_services_response"):
                names.update(dict.fromkeys(s.name for s in answer.list_services_response.service))
        names[HEALTH_SERVICE] = None
        response = reflection_pb2.ServerReflectionResponse()
        for name in names:
            response.list_services_response.service.add(name=name)
        return response

    async def _find(self, method: str, request: Any) -> Any:
        kind = request.WhichOneof("message_request")
        subject = str(getattr(request, kind)) if kind in ("file_containing_symbol", "file_by_filename") else ""
        # The cluster whose service the symbol names (or lives beside) is the likely one to know.
        ordered = sorted(self._backends, key=lambda b: not subject.startswith(b.service.rpartition(".")[0]))
        last = None
        for backend in ordered:
            answer = await _ask(backend, method, request)
            if answer is None:
                continue
            if not answer.HasField("error_response"):
                return answer
            last = answer
        if last is not None:
            return last
        response = reflection_pb2.ServerReflectionResponse()
        response.error_response.error_code = grpc.StatusCode.UNAVAILABLE.value[0]
        response.error_response.error_message = "meshsim: no replica available to answer reflection"
        return response


async def _ask(backend: Backend, method: str, request: Any) -> Any:
    channel = backend.channel()
    if channel is None:
        return None
    return await ask(channel, method, request)


async def ask(channel: grpc.aio.Channel, method: str, request: Any) -> Any:
    """One reflection question on `channel`: the answer, or None when there is none."""
    call = channel.stream_stream(method)(iter([request.SerializeToString()]), timeout=5.0)
    try:
        async for raw in call:
            return reflection_pb2.ServerReflectionResponse.FromString(raw)
    except grpc.aio.AioRpcError:
        return None
    finally:
        call.cancel()
    return None


V1ALPHA = "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"


class MethodShapes:
    """Which methods are unary, learned from the replicas' reflection.

    A proxy on raw bytes must pick a handler's shape before it sees the call, and a
    stream-stream handler on both sides costs several times a unary one. So the proxy
    asks each service's replicas, once, what its methods are: a unary method is then
    forwarded as unary, anything else (or anything a service without reflection
    serves) as a stream, which carries every shape.
    """

    def __init__(self) -> None:
        self._unary: set[str] = set()
        self._asked: set[str] = set()
        self._learning: set[asyncio.Task[None]] = set()

    def is_unary(self, method: str) -> bool:
        return method in self._unary

    def ask(self, service: str, channel_to: Callable[[], grpc.aio.Channel | None]) -> asyncio.Task[None] | None:
        """Learn `service`'s methods in the background, from a replica `channel_to()` reaches (once per
        service, so a call that finds the service asked costs a set lookup; asyncio's side of the thread)."""
        if service in self._asked:
            return None
        channel = channel_to()
        if channel is None:
            return None
        self._asked.add(service)
        task = asyncio.get_running_loop().create_task(self._learn(service, channel))
        self._learning.add(task)
        task.add_done_callback(self._learning.discard)
        return task

    async def _learn(self, service: str, channel: grpc.aio.Channel) -> None:
        answer = await ask(channel, V1ALPHA, reflection_pb2.ServerReflectionRequest(file_containing_symbol=service))
        if answer is None:
            self._asked.discard(service)  # no replica answered (not up yet?): a later call asks again
            return
        if not answer.HasField("file_descriptor_response"):
            return
        for raw in answer.file_descriptor_response.file_descriptor_proto:
            described = descriptor_pb2.FileDescriptorProto.FromString(raw)
            prefix = f"{described.package}." if described.package else ""
            for entry in described.service:
                if prefix + entry.name != service:
                    continue
                for method in entry.method:
                    if not method.client_streaming and not method.server_streaming:
                        self._unary.add(f"/{service}/{method.name}")
