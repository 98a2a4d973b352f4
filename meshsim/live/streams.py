"""Streaming calls through the mesh: A6's retry buffer and commit, over grpc.aio stream-stream calls.

Every gRPC call is, on the wire, a stream of requests and a stream of responses. Until
the first response headers arrive nothing has reached the caller, so the call may still
be retried or hedged: its requests are kept (`RequestReplay`) and sent again to each
new attempt. The first attempt whose headers arrive (anything but a trailers-only
error) commits the call (`CallRun.commit`): the others are cancelled and it alone
decides how the call ends. A call whose requests outgrow the buffer commits to the
attempt it has, as gRPC's retry buffer limit does.

These objects live on asyncio's side of the thread (grpc.aio reads the request
iterator there); they tell the call path, wherever it runs (`bridge.Home`), through
its own context, never from inside one of its callbacks.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

import attrs
import grpc

from meshsim.core.events import RequestFinished
from meshsim.core.status import StatusCode
from meshsim.live import bridge
from meshsim.live.bridge import Home
from meshsim.live.config import RETRY_BUFFER_BYTES
from meshsim.live.status import attempt_status, pushback_in
from meshsim.live.transport import Metadata
from meshsim.runtime.channel import CallRun
from meshsim.runtime.transport import OnDone

if TYPE_CHECKING:
    from meshsim.live.tracing import CallTrace

_log = logging.getLogger(__name__)

# How long a call whose write failed may take to report the server's status before it is cancelled.
_STATUS_GRACE = 5.0


class RequestReplay:
    """A call's requests, read by each attempt from the start.

    Until the call commits, what is kept is bounded by `limit` bytes (going over it
    commits the call); after, the one remaining reader's messages are dropped once read,
    and `fill` waits while `limit` bytes are unread, so that a slow replica slows the
    caller instead of growing the proxy's memory.
    """

    def __init__(self, limit: int = RETRY_BUFFER_BYTES, size: Callable[[Any], int] = len) -> None:
        self.limit = limit
        self._size_of = size
        self._messages: list[Any] = []
        self._sizes: list[int] = []
        self._base = 0  # the position of _messages[0] in the call's request stream
        self._bytes = 0  # held in _messages
        self._changed = asyncio.Event()
        self._drained = asyncio.Event()
        self.ended = False
        self.overflowed = False
        self.committed = False
        self.on_overflow: Callable[[], None] | None = None

    def append(self, message: Any) -> None:
        size = self._size_of(message)
        self._messages.append(message)
        self._sizes.append(size)
        self._bytes += size
        if self._bytes > self.limit and not self.overflowed and not self.committed:
            self.overflowed = True
            if self.on_overflow is not None:
                self.on_overflow()
        self._wake()

    def end(self) -> None:
        """The caller half-closed: every attempt sees the end of its requests."""
        self.ended = True
        self._wake()

    def commit(self) -> None:
        self.committed = True

    @property
    def held_bytes(self) -> int:
        return self._bytes

    def _wake(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def read(self) -> AsyncIterator[Any]:
        position = self._base
        while True:
            while position - self._base < len(self._messages):
                if position < self._base:
                    return  # left behind by a commit to another attempt, which cancels this one
                message = self._messages[position - self._base]
                position += 1
                if self.committed:
                    drop = position - self._base
                    self._bytes -= sum(self._sizes[:drop])
                    del self._messages[:drop], self._sizes[:drop]
                    self._base = position
                    self._drained.set()
                yield message
            if self.ended:
                return
            await self._changed.wait()

    @property
    def full(self) -> bool:
        """Committed, with `limit` bytes its attempt has not read yet: the caller should wait (`room`)."""
        return self.committed and self._bytes > self.limit

    async def room(self) -> None:
        """Return once the attempt has read enough that the caller may send more (asyncio's side)."""
        while self.full:
            self._drained = asyncio.Event()
            await self._drained.wait()

    async def fill(self, requests: AsyncIterator[Any]) -> None:
        """Copy a request stream in (an asyncio task: grpc.aio's server iterators are read there)."""
        async for message in requests:
            self.append(message)
            await self.room()
        self.end()


@attrs.frozen
class Unanswered:
    """How a streaming call ended when no attempt ever answered: the last attempt's status and words."""

    status: StatusCode
    details: str
    trailing: tuple[tuple[str, Any], ...] = ()


class StreamAttempt:
    """One attempt of a streaming call: a grpc.aio stream-stream call and how it was reported."""

    def __init__(self, call: Any, on_done: OnDone, home: Home) -> None:
        self.call = call
        self.details = ""
        self.trailing: tuple[tuple[str, Any], ...] = ()
        self.cancelled_with: StatusCode | None = None
        self._on_done = on_done
        self._home = home
        self.reported = False
        self.writing: asyncio.Task[None] | None = None  # held: asyncio keeps only weak references

    def report(self, status: StatusCode, pushback: int | None = None) -> None:
        """How the attempt ended, told to the call path once, from either side of the thread."""
        if self.reported:
            return
        self.reported = True
        if self._home.here():
            self._on_done(status, pushback)  # now, so that the call has ended when its reader returns
        else:
            self._home.later(self._on_done, status, pushback)

    def cancel(self, status: StatusCode) -> None:
        if self.reported:
            return
        self.reported = True
        self.cancelled_with = status
        self.details = "deadline exceeded" if status is StatusCode.DEADLINE_EXCEEDED else f"{status.name} by meshsim"
        self.call.cancel()
        if self.writing is not None:
            self.writing.cancel()
        # Later, never from inside: the call path cancels attempts while it walks them.
        self._home.later(self._on_done, status, None)


def unanswered_details(event: RequestFinished) -> str:
    """Why a call ended with no replica's answer to pass on."""
    if event.status is StatusCode.DEADLINE_EXCEEDED:
        return "meshsim: deadline exceeded"
    if event.attempts == 0:
        return "meshsim: refused (circuit open or too many calls)"
    if event.endpoint is not None:
        return ""  # a replica answered, without a message: its status is passed on as it came
    return "meshsim: no replica available"


@attrs.define(eq=False)
class StreamInvocation:
    """The payload of a streaming call through the mesh (any pattern; the proxy sends raw bytes).

    `outcome` resolves with the `StreamAttempt` that committed, or with `Unanswered` when the
    call ended without one; whoever started the call reads the committed attempt's responses
    and calls its `report` when the stream ends.
    """

    path: str
    requests: RequestReplay
    metadata: tuple[tuple[str, Any], ...] = ()
    serializer: Callable[[Any], bytes] | None = None
    deserializer: Callable[[bytes], Any] | None = None
    run: CallRun | None = None
    outcome: asyncio.Future[StreamAttempt | Unanswered] = attrs.field(
        factory=lambda: bridge.host_loop().create_future()
    )
    # The call's span, whose child each attempt's is (live/tracing.py), or None: not traced.
    trace: CallTrace | None = None

    def start(
        self, channel: grpc.aio.Channel, timeout: float | None, on_done: OnDone, home: Home, extra: Metadata = ()
    ) -> StreamAttempt:
        metadata = (*self.metadata, *extra) if extra else self.metadata
        call = channel.stream_stream(self.path, response_deserializer=self.deserializer)(
            timeout=timeout, metadata=metadata or None
        )
        attempt = StreamAttempt(call, on_done, home)
        writing = bridge.host_loop().create_task(_write_requests(call, self.requests.read(), self.serializer))
        # A call that ends (answered, failed, cancelled) stops its writer, which may be waiting for
        # requests the caller has not sent yet.
        call.add_done_callback(lambda _: writing.cancel())
        attempt.writing = writing
        home.launch(_first_answer(call), lambda answered: self._answered(attempt, answered))
        return attempt

    def started(self, run: CallRun) -> None:
        """The call path has the call: from here an overflowing buffer commits it."""
        self.run = run
        self.requests.on_overflow = self._overflowed
        if self.requests.overflowed:
            self._overflowed()

    def _overflowed(self) -> None:
        # The requests outgrew what may be kept for another attempt: the call stays with the one it has.
        assert self.run is not None
        self.run.commit()
        self.requests.commit()

    def ended(self, event: RequestFinished) -> None:
        """The call ended (in Trio's context); if no attempt committed, its end is the answer."""
        if self.outcome.done():
            return
        handle = None if self.run is None else self.run.handle
        if isinstance(handle, StreamAttempt):
            self.outcome.set_result(Unanswered(event.status, handle.details, handle.trailing))
        else:
            self.outcome.set_result(Unanswered(event.status, unanswered_details(event)))

    def _answered(self, attempt: StreamAttempt, answered: asyncio.Future[tuple[StatusCode, str, Any] | None]) -> None:
        if attempt.reported:
            return  # cancelled (a hedge that lost, the call's deadline) before it answered
        failure = answered.result()
        if failure is not None:
            status, attempt.details, trailing = failure
            attempt.trailing = tuple(trailing or ())
            attempt.report(status, pushback_in(trailing))
            return
        run = self.run
        assert run is not None
        run.commit(attempt)
        self.requests.commit()
        if not self.outcome.done():
            self.outcome.set_result(attempt)


async def _write_requests(call: Any, requests: AsyncIterator[Any], serializer: Callable[[Any], bytes] | None) -> None:
    """Write a stream's requests, then half-close; a write the call's end overtakes just stops writing.

    grpc.aio's own writes (`call.write`, or a request iterator) turn a write that fails because
    the server has already ended the call into INTERNAL "Internal error from Core",
    overwriting the status the server sent (grpc/grpc#36066: we measured 8 in 50 aborted
    bidi calls). A retry policy must see the server's status, so this writer sends through
    the call's own operations and leaves the status alone.
    """
    operations = call._cython_call  # no public way to write without the status being overwritten
    try:
        await call.wait_for_connection()
        async for message in requests:
            if call.done():
                return
            await operations.send_serialized_message(message if serializer is None else serializer(message))
        if not call.done():
            await operations.send_receive_close()
    except asyncio.CancelledError:
        raise
    except (grpc.aio.AioRpcError, grpc.aio.InternalError):
        # The call ended (or is ending) with the server's status; if Core never delivers one
        # (it can refuse a write outright), the call must not hang on it.
        try:
            await asyncio.wait_for(asyncio.shield(call.code()), _STATUS_GRACE)
        except TimeoutError:
            call.cancel()
    except Exception:
        # A request that cannot be sent (a serializer refusing it): end the call rather than leave it
        # waiting for requests that will never come.
        _log.exception("cannot send a request of %s", call)
        call.cancel()


async def _first_answer(call: Any) -> tuple[StatusCode, str, Any] | None:
    """Wait for the response headers: None when the attempt answered, else how it failed without answering."""
    try:
        await call.initial_metadata()
        if not call.done():
            return None
        code = await call.code()
        if code == grpc.StatusCode.OK:
            return None
        details = await call.details() or ""
        return attempt_status(code, details), details, await call.trailing_metadata()
    except asyncio.CancelledError:
        return StatusCode.CANCELLED, "cancelled by meshsim", ()
    except grpc.aio.AioRpcError as error:
        return attempt_status(error.code(), error.details()), error.details() or "", error.trailing_metadata()
