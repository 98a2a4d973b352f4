"""The live transport: the runtime's Transport over grpc.aio channels, one per replica.

Each attempt is a grpc.aio call started on the host asyncio loop; its end comes back
to Trio through the bridge and becomes the runtime's on_done, so a live call, like a
simulated one, costs no Trio task. Errors are translated at this seam (by
`meshsim.live.status`): the mesh logic only ever sees meshsim's StatusCode and HealthStatus.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator, Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

import attrs
import grpc
import trio
import trio.lowlevel
from grpc_health.v1 import health_pb2, health_pb2_grpc

from meshsim.core.calls import CallSpec
from meshsim.core.status import HealthStatus, StatusCode
from meshsim.live import bridge
from meshsim.live.bridge import Home
from meshsim.live.reachability import Reachability
from meshsim.live.status import attempt_status, health_from_grpc, pushback_of
from meshsim.runtime.transport import AttemptHandle, EndpointGone, OnAnswer, OnDone, WatchUnsupported

if TYPE_CHECKING:
    from meshsim.live.tracing import CallTrace


class Invocation(Protocol):
    """The payload of a live call: starts one attempt of it on a replica's channel; its end goes to
    `on_done` in `home`'s context."""

    def start(
        self, channel: grpc.aio.Channel, timeout: float | None, on_done: OnDone, home: Home, extra: Metadata = ()
    ) -> AttemptHandle:
        """`extra`: metadata for this attempt alone (its trace context)."""
        ...


Metadata = tuple[tuple[str, str], ...]


@attrs.frozen
class UnaryInvocation:
    """A unary call: which method, what to send, how to (de)serialise."""

    path: str
    request: object
    serializer: Callable[[object], bytes] | None = None
    deserializer: Callable[[bytes], object] | None = None
    metadata: tuple[tuple[str, str], ...] = ()
    # Keep the response's initial and trailing metadata on the attempt (a proxy passes them on).
    relay: bool = False
    # The call's span, whose child each attempt's is (live/tracing.py), or None: not traced.
    trace: CallTrace | None = None

    def start(
        self, channel: grpc.aio.Channel, timeout: float | None, on_done: OnDone, home: Home, extra: Metadata = ()
    ) -> LiveAttempt:
        method = channel.unary_unary(
            self.path, request_serializer=self.serializer, response_deserializer=self.deserializer
        )
        attempt = LiveAttempt()
        metadata = (*self.metadata, *extra) if extra else self.metadata
        call = method(self.request, timeout=timeout, metadata=metadata or None)

        def finished(future: asyncio.Future[object]) -> None:
            if attempt.cancelled_with is not None:
                attempt.details = "cancelled by meshsim"
                on_done(attempt.cancelled_with, None)
                return
            if future.cancelled():
                # Not by meshsim: grpc.aio cancels the calls of a channel it closes (one drained
                # after a certificate rotation, or a replica discovery removed).
                attempt.details = "meshsim: the connection to the replica was closed"
                on_done(StatusCode.UNAVAILABLE, None)
                return
            error = future.exception()
            if error is None:
                attempt.response = future.result()
                on_done(StatusCode.OK, None)
            elif isinstance(error, grpc.aio.AioRpcError):
                attempt.details = error.details() or ""
                attempt.initial_metadata = error.initial_metadata() or ()
                attempt.trailing_metadata = error.trailing_metadata() or ()
                on_done(attempt_status(error.code(), error.details()), pushback_of(error))
            else:
                attempt.details = f"{type(error).__name__}: {error}"
                on_done(StatusCode.INTERNAL, None)

        attempt.future = home.launch(_with_metadata(call, attempt) if self.relay else call, finished)
        return attempt


async def _with_metadata(call: Any, attempt: LiveAttempt) -> object:
    response = await call
    attempt.initial_metadata = await call.initial_metadata() or ()
    attempt.trailing_metadata = await call.trailing_metadata() or ()
    return response


class AttemptFaults(Protocol):
    """Chaos faults on single endpoints, as a proxy holds them (live/fault_filter.py)."""

    def on_attempt(self, endpoint: str, method: str, metadata: Any) -> Any:
        """What the faults do to an attempt of `method` on `endpoint` (None: nothing)."""
        ...

    def faulted_attempt(
        self,
        fault: Any,
        deadline_at: float | None,
        send: Callable[[float | None, OnDone], AttemptHandle],
        on_done: OnDone,
        home: Home,
    ) -> AttemptHandle:
        """The attempt under `fault`, sent (when it is) by `send`."""
        ...


class LiveAttempt:
    """The handle of one live attempt: cancel it, or read its response once it ended OK."""

    def __init__(self) -> None:
        self.response: object = None
        self.details = ""
        self.initial_metadata: Any = ()
        self.trailing_metadata: Any = ()
        self.cancelled_with: StatusCode | None = None
        self.future: asyncio.Future[object] | None = None

    def cancel(self, status: StatusCode) -> None:
        if self.future is not None and not self.future.done():
            self.cancelled_with = status
            self.future.cancel()


class LiveTransport:
    """One grpc.aio channel per replica; `connect(endpoint)` makes the channel of one discovery adds."""

    def __init__(
        self,
        channels: Mapping[str, grpc.aio.Channel],
        connect: Callable[[str], grpc.aio.Channel] | None = None,
        home: Home | None = None,
        secure: bool = False,
    ) -> None:
        """`home`: where the call path runs (Trio by default); `secure`: the channels speak TLS."""
        self.channels = dict(channels)
        self._connect = connect
        self.home: Home = home if home is not None else bridge.TrioHome()
        self._retired: list[grpc.aio.Channel] = []
        # What health checks learn of replicas they cannot reach, said once in a log line.
        self.reachability = Reachability(secure)
        # Endpoints this caller is cut from (a partition a live run plays): new calls are refused,
        # probes find nothing and Watch streams break, as in the simulator; calls already on
        # their way go on.
        self._cut: set[str] = set()
        self._watches: dict[str, set[grpc.aio.UnaryStreamCall]] = {}
        # Chaos faults on single endpoints (a proxy's): attempts delayed or failed in the replica's place.
        self.faults: AttemptFaults | None = None

    def open(self, endpoint: str) -> None:
        if endpoint not in self.channels:
            if self._connect is None:
                raise RuntimeError(f"no channel to {endpoint} and no way to make one")
            self.channels[endpoint] = self._connect(endpoint)

    def reconnect(self, drain: float) -> None:
        """New channels to every endpoint (new credentials, say): new calls take them at once, calls
        in flight finish on the old ones, which close after at most `drain` seconds."""
        assert self._connect is not None
        for endpoint, old in list(self.channels.items()):
            self.channels[endpoint] = self._connect(endpoint)
            self._retired.append(old)
            bridge.start(old.close(drain), functools.partial(self._forget, old))

    def _forget(self, old: grpc.aio.Channel, _: object) -> None:
        if old in self._retired:
            self._retired.remove(old)

    async def close_endpoint(self, endpoint: str) -> None:
        self.reachability.forget(endpoint)
        channel = self.channels.pop(endpoint, None)
        if channel is not None:
            await bridge.wait(channel.close())

    def start_call(
        self,
        endpoint: str,
        call: CallSpec,
        deadline_at: float | None,
        on_done: OnDone,
        on_answer: OnAnswer | None = None,
    ) -> AttemptHandle:
        """As Transport.start_call; `on_answer` is not used: a stream's invocation commits it
        (live/streams.py) when its headers arrive."""
        # Duck-typed: a runtime-checkable Protocol's isinstance costs more than the rest of the call.
        start = getattr(call.payload, "start", None)
        if start is None:
            raise TypeError(f"a live call carries an invocation (what to send and how), not {call.payload!r}")
        home = self.home
        timeout = None if deadline_at is None else max(0.0, deadline_at - home.now())
        channel = self.channels.get(endpoint)
        if channel is None or endpoint in self._cut:
            raise EndpointGone(endpoint)
        extra: Metadata = ()
        trace = getattr(call.payload, "trace", None)
        if trace is not None:
            on_done, extra = trace.attempt(endpoint, on_done)
        faults = self.faults
        if faults is not None:
            fault = faults.on_attempt(endpoint, call.method, getattr(call.payload, "metadata", ()))
            if fault is not None:

                def send(timeout: float | None, on_done: OnDone) -> AttemptHandle:
                    # After a fault's delay the endpoint may be cut off, or its channel replaced.
                    now = self.channels.get(endpoint)
                    if now is None or endpoint in self._cut:
                        raise EndpointGone(endpoint)
                    handle: AttemptHandle = start(now, timeout, on_done, home, extra)
                    return handle

                return faults.faulted_attempt(fault, deadline_at, send, on_done, home)
        attempt: AttemptHandle = start(channel, timeout, on_done, home, extra)
        return attempt

    async def check_health(self, endpoint: str, service: str) -> HealthStatus:
        channel = self.channels.get(endpoint)
        if channel is None or endpoint in self._cut:
            await trio.lowlevel.checkpoint()
            return HealthStatus.UNREACHABLE  # discovery removed it while the probe was due, or cut
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            answer = await bridge.wait(stub.Check(health_pb2.HealthCheckRequest(service=service)))
        except grpc.aio.AioRpcError as error:
            if error.code() == grpc.StatusCode.NOT_FOUND:
                self.reachability.reached(endpoint)
                return HealthStatus.SERVICE_UNKNOWN
            self._unreached(endpoint, error)
            return HealthStatus.UNREACHABLE
        except bridge.HostCancelled:
            return HealthStatus.UNREACHABLE  # its channel closed under it (replaced, or removed)
        self.reachability.reached(endpoint)
        return health_from_grpc(answer.status)

    def _unreached(self, endpoint: str, error: grpc.aio.AioRpcError) -> None:
        if error.code() == grpc.StatusCode.UNAVAILABLE:
            self.reachability.failed(endpoint, error.details() or "")

    def cut_off(self, endpoint: str, cut: bool) -> None:
        """Cut this caller from `endpoint` (a partition), or end the cut."""
        if not cut:
            self._cut.discard(endpoint)
            return
        self._cut.add(endpoint)
        for call in self._watches.get(endpoint, ()):
            call.cancel()

    async def watch_health(self, endpoint: str, service: str) -> AsyncIterator[HealthStatus]:
        channel = self.channels.get(endpoint)
        while channel is not None and endpoint not in self._cut:
            call = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(service=service))
            watches = self._watches.setdefault(endpoint, set())
            watches.add(call)
            try:
                while True:
                    try:
                        answer = await bridge.wait(call.read())
                    except grpc.aio.AioRpcError as error:
                        if error.code() == grpc.StatusCode.UNIMPLEMENTED:
                            raise WatchUnsupported(endpoint) from None
                        if endpoint not in self._cut:
                            self._unreached(endpoint, error)
                        break
                    except bridge.HostCancelled:
                        # Cut off (a partition), or its channel was closed: a drained one after a
                        # reconnect, or a removed one.
                        break
                    if answer is grpc.aio.EOF:
                        break
                    self.reachability.reached(endpoint)
                    yield health_from_grpc(answer.status)
            finally:
                watches.discard(call)
                call.cancel()
            if endpoint in self._cut:
                return
            # A stream cut because its channel was replaced (reconnect) follows the new channel:
            # the endpoint did not fail.
            current = self.channels.get(endpoint)
            if current is channel:
                return
            channel = current

    async def close(self) -> None:
        """Close every channel now, the ones still draining after a reconnect too."""
        for channel in [*self.channels.values(), *self._retired]:
            await bridge.wait(channel.close())
        self._retired.clear()
