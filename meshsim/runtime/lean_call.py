"""A call with nothing to decide: one attempt, its status the call's.

On a channel with no retry, hedging, limits, breakers or retry throttle, a call that
finds an endpoint is one attempt from start to end: `CallRun`'s state machine (attempt
lists, a closure per attempt, the checks of every policy at each step) would decide
nothing. `LeanCall` does what CallRun does for such a call, in the same order and with
the same events, in a few slots: pick (done by the channel), count the endpoint's load,
send; at the attempt's end record it, end the call, tell the caller. A call that finds
no endpoint goes the general way (CallRun waits while the balancer warms up, or fails
the attempt UNAVAILABLE), as does any call on a channel with a policy.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from meshsim.core.calls import CallSpec
from meshsim.core.endpoint import Endpoint
from meshsim.core.events import AttemptFinished, AttemptKind, RequestFinished
from meshsim.core.status import StatusCode
from meshsim.runtime.transport import AttemptHandle, EndpointGone

if TYPE_CHECKING:
    from meshsim.runtime.balancer import Balancer
    from meshsim.runtime.observer import Observer
    from meshsim.runtime.timers import Timers
    from meshsim.runtime.transport import Transport

_log = logging.getLogger(__name__)

# on_ended(started, finished), as the channel's callers give it.
Ended = Callable[[float, float], None]


class Channel(Protocol):
    """What a lean call uses of its channel (runtime/channel.py's MeshChannel)."""

    client: str
    service: str
    balancer: Balancer
    transport: Transport
    observer: Observer
    timers: Timers

    def attempt_ended(
        self,
        endpoint: Endpoint | None,
        kind: AttemptKind,
        status: StatusCode,
        started: float,
        now: float,
        permit: int = ...,
        blame: bool = ...,
    ) -> None: ...

    def lean_ended(self, lean: LeanCall) -> None: ...


class LeanCall:
    """One call of one attempt; `finish` and `done` as CallRun's, for the channel's abort."""

    __slots__ = ("call", "channel", "done", "endpoint", "handle", "in_flight", "on_ended", "started")

    def __init__(
        self, channel: Channel, call: CallSpec, endpoint: Endpoint, started: float, on_ended: Ended | None
    ) -> None:
        self.channel = channel
        self.call = call
        self.endpoint = endpoint
        self.started = started
        self.on_ended = on_ended
        self.done = False
        self.in_flight = False
        self.handle: AttemptHandle | None = None

    def send(self, deadline_at: float | None) -> None:
        endpoint = self.endpoint
        endpoint.in_flight += 1
        self.in_flight = True
        try:
            self.handle = self.channel.transport.start_call(endpoint.name, self.call, deadline_at, self.ended)
        except Exception as error:
            # As CallRun: the attempt ends UNAVAILABLE if the endpoint is gone, else INTERNAL (not
            # the replica's fault), and so does the call.
            gone = isinstance(error, EndpointGone)
            status = StatusCode.UNAVAILABLE if gone else StatusCode.INTERNAL
            self.in_flight = False
            endpoint.in_flight -= 1
            now = self.channel.timers.now()
            self.channel.attempt_ended(endpoint, AttemptKind.FIRST, status, self.started, now, blame=gone)
            if not gone:
                self._report("the first attempt", error)
            self._end(status, now, endpoint)

    def ended(self, status: StatusCode, pushback: int | None) -> None:
        """The transport's on_done for the attempt."""
        channel = self.channel
        endpoint = self.endpoint
        self.in_flight = False
        endpoint.in_flight -= 1
        now = channel.timers.now()
        try:
            # channel.attempt_ended for an attempt without a breaker, inline: this runs once a call.
            direct = channel.observer.directs.get(AttemptFinished)
            if direct is not None:
                direct(channel.client, channel.service, endpoint.name, AttemptKind.FIRST, status, self.started, now)
            else:
                channel.observer.emit(
                    AttemptFinished(
                        channel.client, channel.service, endpoint.name, AttemptKind.FIRST, status, self.started, now
                    )
                )
            balancer = channel.balancer
            if endpoint.latency is not None or balancer.outlier is not None:
                balancer.record_outcome(endpoint, status, now - self.started, now)
        except Exception as error:
            if not self.done:
                self._report("the end of an attempt", error)
                self._end(StatusCode.INTERNAL, now, None)
            return
        if not self.done:
            self.done = True
            self._close(status, now, endpoint)

    def finish(self, status: StatusCode, cancel_with: StatusCode = StatusCode.CANCELLED) -> None:
        """End the call now with `status` (the channel aborting it); its attempt ends `cancel_with`."""
        if self.done:
            return
        self.done = True  # the attempt's end, which cancelling brings, then decides nothing
        if self.in_flight and self.handle is not None:
            try:
                self.handle.cancel(cancel_with)
            except Exception as error:
                self._report("cancelling an attempt", error)
                status = StatusCode.INTERNAL
        self._close(status, self.channel.timers.now(), None)

    def _end(self, status: StatusCode, now: float, decider: Endpoint | None) -> None:
        self.done = True
        self._close(status, now, decider)

    def _close(self, status: StatusCode, now: float, decider: Endpoint | None) -> None:
        channel = self.channel
        call = self.call
        endpoint = None if decider is None else decider.name
        try:
            # Its only listener, when that is the recorder, takes the fields: no event is built.
            direct = channel.observer.directs.get(RequestFinished)
            if direct is not None:
                direct(channel.client, channel.service, endpoint, status, self.started, now, call.key, 1)
            else:
                channel.observer.emit(
                    RequestFinished(
                        client=channel.client,
                        service=channel.service,
                        endpoint=endpoint,
                        pattern=call.pattern,
                        status=status,
                        started=self.started,
                        finished=now,
                        key=call.key,
                        attempts=1,
                        method=call.method,
                    )
                )
        finally:
            try:
                channel.lean_ended(self)
            finally:
                if self.on_ended is not None:
                    self.on_ended(self.started, now)

    def _report(self, where: str, error: Exception) -> None:
        channel = self.channel
        _log.warning(
            "call %s -> %s %s: %s raised %s: %s; it ends INTERNAL",
            channel.client,
            channel.service,
            self.call.method or self.call.pattern.value,
            where,
            type(error).__name__,
            error,
        )
        _log.debug("the traceback of the error above", exc_info=error)
