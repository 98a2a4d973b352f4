"""A scenario client's calls, made for real: each CallSpec becomes a grpc.aio call of its pattern.

The runtime's load generators (runtime/load.py) decide when a client calls and what
(pattern, messages, key); here each call gets what a live transport sends: a unary
`Process`, or a stream (`StreamEvents`, `CollectMetrics`, `Chat`) whose requests are
all ready before it starts, read to its end by a task of its own once an attempt has
answered (A6's commit).
"""

from __future__ import annotations

import attrs
import grpc
import trio

from meshsim.core.calls import MESH_SERVICE, METHOD_OF_PATTERN, CallSpec, Pattern
from meshsim.core.events import RequestFinished
from meshsim.core.status import StatusCode
from meshsim.live import bridge
from meshsim.live.status import status_of
from meshsim.live.streams import RequestReplay, StreamAttempt, StreamInvocation, Unanswered
from meshsim.live.transport import UnaryInvocation
from meshsim.pb.v1 import mesh_pb2
from meshsim.runtime.channel import Finished, MeshChannel

PATHS = {pattern: f"/{MESH_SERVICE}/{method}" for pattern, method in METHOD_OF_PATTERN.items()}
_PROCESS = mesh_pb2.ProcessRequest(request_id="load").SerializeToString()
_METRIC = mesh_pb2.Metric(metric_name="load", value=1.0).SerializeToString()
_CHAT = mesh_pb2.ChatMessage(user_id="load", message="hello").SerializeToString()


class LiveCalls:
    """`start(call, on_finished)`, as MeshChannel.start, for calls that must carry real requests."""

    def __init__(self, channel: MeshChannel, nursery: trio.Nursery) -> None:
        self._channel = channel
        self._nursery = nursery

    def start(self, call: CallSpec, on_finished: Finished | None = None) -> object:
        if call.pattern is Pattern.UNARY:
            path = PATHS[Pattern.UNARY]
            return self._channel.start(
                attrs.evolve(call, method=path, payload=UnaryInvocation(path, _PROCESS)), on_finished
            )
        self._nursery.start_soon(self._stream, call, on_finished)
        return None

    async def _stream(self, call: CallSpec, on_finished: Finished | None) -> None:
        replay = RequestReplay()
        if call.pattern is Pattern.SERVER_STREAM:
            replay.append(mesh_pb2.StreamRequest(stream_id="load", count=call.messages).SerializeToString())
        else:
            message = _METRIC if call.pattern is Pattern.CLIENT_STREAM else _CHAT
            for _ in range(call.messages):
                replay.append(message)
        replay.end()
        path = PATHS[call.pattern]
        invocation = StreamInvocation(path, replay)

        def ended(event: RequestFinished) -> None:
            invocation.ended(event)
            if on_finished is not None:
                on_finished(event)

        run = self._channel.start(attrs.evolve(call, method=path, payload=invocation), ended)
        invocation.started(run)
        attempt: StreamAttempt | None = None
        try:
            outcome = await bridge.wait(invocation.outcome)
            if isinstance(outcome, Unanswered):
                return  # ended without an answer: already recorded
            attempt = outcome
            await self._read(attempt)
        finally:
            if attempt is not None:
                attempt.cancel(StatusCode.CANCELLED)  # nothing if it already ended
            elif not run.done:
                run.finish(StatusCode.CANCELLED)

    @staticmethod
    async def _read(attempt: StreamAttempt) -> None:
        """Read the committed attempt's responses to the end, and report how it ended."""
        try:
            while await bridge.wait(attempt.call.read()) is not grpc.aio.EOF:
                pass
        except grpc.aio.AioRpcError as error:
            attempt.report(status_of(error))
            return
        except bridge.HostCancelled:
            return  # the call path ended it (its deadline, the run stopping): reported there
        attempt.report(StatusCode.OK)
