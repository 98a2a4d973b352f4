"""Server reflection at the proxy: one answer from every service behind it, and its own.

The proxy answers reflection itself, whatever is behind it: reflection calls never take
a turn of the balancer (grpcurl makes one on every invocation, which would otherwise
shift round robin), and the proxy's own services (grpc.health.v1.Health, reflection)
are described even when no replica is up. `list_services` is the union over the
clusters' replicas plus the proxy's own; a question about a file or symbol of the
proxy's own is answered from its descriptors, any other goes first to the cluster
whose service name the symbol starts with, then to the others, until one knows it.
Each question goes to one usable replica directly; the last good answers are kept
(bounded), so that a replica being down does not make its descriptors unknown. v1 and
v1alpha share their messages on the wire, so both are answered with the v1alpha types.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from typing import Any

import grpc
from google.protobuf import descriptor_pb2
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha import reflection_pb2

METHODS = frozenset(
    {
        "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
        "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
    }
)
HEALTH_SERVICE = "grpc.health.v1.Health"
REFLECTION_SERVICE = "grpc.reflection.v1alpha.ServerReflection"
# The files the proxy describes itself: its own services, whatever the replicas serve.
_OWN_FILES = {module.DESCRIPTOR.name: module.DESCRIPTOR for module in (health_pb2, reflection_pb2)}
_OWN_PACKAGES = tuple(f"{d.package}." for d in _OWN_FILES.values())
# How many answers from replicas are kept for when none can answer.
_REMEMBERED = 256
# A reflection question to a replica: grpcurl waits for it before every call.
_ASK_TIMEOUT = 2.0


class Backend:
    """One cluster as reflection sees it: the service it routes, and a channel to a healthy replica."""

    def __init__(self, service: str, channel: Callable[[], grpc.aio.Channel | None]) -> None:
        self.service = service
        self.channel = channel


class MergedReflection:
    def __init__(self, backends: Sequence[Backend]) -> None:
        self._backends = list(backends)
        self._listed: dict[str, tuple[str, ...]] = {}  # each cluster's last listing
        self._answers: collections.OrderedDict[bytes, bytes] = collections.OrderedDict()

    async def answer(self, method: str, requests: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        async for raw in requests:
            request = reflection_pb2.ServerReflectionRequest.FromString(raw)
            kind = request.WhichOneof("message_request")
            if kind == "list_services":
                response = await self._list(method, request)
            else:
                response = _own_answer(request) or await self._find(method, request)
            response.valid_host = request.host
            response.original_request.CopyFrom(request)
            yield response.SerializeToString()

    async def _list(self, method: str, request: Any) -> Any:
        names: dict[str, None] = {}
        for backend in self._backends:
            names[backend.service] = None
            answer = await _ask(backend, method, request)
            if answer is not None and answer.HasField("list_services_response"):
                self._listed[backend.service] = tuple(s.name for s in answer.list_services_response.service)
            names.update(dict.fromkeys(self._listed.get(backend.service, ())))
        names[HEALTH_SERVICE] = None
        names[REFLECTION_SERVICE] = None
        response = reflection_pb2.ServerReflectionResponse()
        for name in names:
            response.list_services_response.service.add(name=name)
        return response

    async def _find(self, method: str, request: Any) -> Any:
        kind = request.WhichOneof("message_request")
        subject = str(getattr(request, kind)) if kind in ("file_containing_symbol", "file_by_filename") else ""
        # The cluster whose service the symbol names (or lives beside) is the likely one to know.
        ordered = sorted(self._backends, key=lambda b: not subject.startswith(b.service.rpartition(".")[0]))
        question = _question(request)
        last = None
        for backend in ordered:
            answer = await _ask(backend, method, request)
            if answer is None:
                continue
            if not answer.HasField("error_response"):
                self._remember(question, answer)
                return answer
            last = answer
        remembered = self._answers.get(question)
        if remembered is not None:
            return reflection_pb2.ServerReflectionResponse.FromString(remembered)
        if last is not None:
            return last
        response = reflection_pb2.ServerReflectionResponse()
        response.error_response.error_code = grpc.StatusCode.UNAVAILABLE.value[0]
        response.error_response.error_message = "meshsim: no replica available to answer reflection"
        return response

    def _remember(self, question: bytes, answer: Any) -> None:
        self._answers[question] = answer.SerializeToString()
        self._answers.move_to_end(question)
        while len(self._answers) > _REMEMBERED:
            self._answers.popitem(last=False)


def _question(request: Any) -> bytes:
    """What a request asks, whoever asks it (the host and the v1/v1alpha difference aside)."""
    question = reflection_pb2.ServerReflectionRequest()
    question.CopyFrom(request)
    question.host = ""
    return bytes(question.SerializeToString(deterministic=True))


def _own_answer(request: Any) -> Any:
    """The answer to a question about the proxy's own services, or None when it is about another's."""
    kind = request.WhichOneof("message_request")
    if kind == "file_by_filename":
        found = _OWN_FILES.get(request.file_by_filename)
    elif kind == "file_containing_symbol":
        symbol = request.file_containing_symbol
        found = next((d for d in _OWN_FILES.values() if symbol.startswith(f"{d.package}.")), None)
    else:
        return None
    if found is None:
        return None
    response = reflection_pb2.ServerReflectionResponse()
    # health.proto and reflection.proto import nothing: each file is its whole answer.
    response.file_descriptor_response.file_descriptor_proto.append(found.serialized_pb)
    return response


async def _ask(backend: Backend, method: str, request: Any) -> Any:
    channel = backend.channel()
    if channel is None:
        return None
    return await ask(channel, method, request)


async def ask(channel: grpc.aio.Channel, method: str, request: Any) -> Any:
    """One reflection question on `channel`: the answer, or None when there is none."""
    call = channel.stream_stream(method)(iter([request.SerializeToString()]), timeout=_ASK_TIMEOUT)
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

    def __init__(
        self, services: Iterable[str] = (), limit: int = 256, retry_after: float = 10.0, others_per_second: float = 10.0
    ) -> None:
        self._unary: set[str] = set()
        # The services the proxy routes are always asked about (again after `retry_after` while their
        # replicas do not answer). Any other name a call carries is asked about at most
        # `others_per_second` times a second, and at most `limit` names are remembered, the oldest
        # unanswered going first: calls naming made-up services grow nothing and cost the replicas
        # a bounded trickle of reflection calls.
        self._routed = frozenset(services)
        self.limit = limit
        self.retry_after = retry_after
        self._other_gap = 1.0 / others_per_second
        self._next_other = 0.0
        self._asked: collections.OrderedDict[str, float | None] = collections.OrderedDict()
        self._learning: set[asyncio.Task[None]] = set()

    def is_unary(self, method: str) -> bool:
        return method in self._unary

    @property
    def services_asked(self) -> int:
        return len(self._asked)

    def ask(self, service: str, channel_to: Callable[[], grpc.aio.Channel | None]) -> asyncio.Task[None] | None:
        """Learn `service`'s methods in the background, from a replica `channel_to()` reaches (so a
        call that finds the service asked costs a dict lookup; asyncio's side of the thread)."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        if service in self._asked:
            asked = self._asked[service]
            if asked is None or now - asked < self.retry_after:
                return None  # learnt, or asked lately
        if service not in self._routed:
            if now < self._next_other:
                return None
            self._next_other = now + self._other_gap
        channel = channel_to()
        if channel is None:
            return None
        self._asked[service] = now
        self._asked.move_to_end(service)
        self._forget_the_oldest_unanswered()
        task = loop.create_task(self._learn(service, channel))
        self._learning.add(task)
        task.add_done_callback(self._learning.discard)
        return task

    def _forget_the_oldest_unanswered(self) -> None:
        while len(self._asked) > self.limit:
            oldest = next((name for name, asked in self._asked.items() if asked is not None), None)
            if oldest is None:
                return  # every one answered: real services, as many as the replicas serve
            del self._asked[oldest]

    async def _learn(self, service: str, channel: grpc.aio.Channel) -> None:
        answer = await ask(channel, V1ALPHA, reflection_pb2.ServerReflectionRequest(file_containing_symbol=service))
        if answer is None or not answer.HasField("file_descriptor_response"):
            return  # no replica answered (not up yet, or no reflection): asked again after a while
        if service in self._asked:
            self._asked[service] = None
        for raw in answer.file_descriptor_response.file_descriptor_proto:
            described = descriptor_pb2.FileDescriptorProto.FromString(raw)
            prefix = f"{described.package}." if described.package else ""
            for entry in described.service:
                if prefix + entry.name != service:
                    continue
                for method in entry.method:
                    if not method.client_streaming and not method.server_streaming:
                        self._unary.add(f"/{service}/{method.name}")
