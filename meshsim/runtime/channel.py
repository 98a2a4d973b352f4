"""The call path: pick an endpoint, hand the call to the transport, account for how it ended."""

from __future__ import annotations

from collections.abc import Callable

import trio

from meshsim.core.calls import CallSpec
from meshsim.core.endpoint import Endpoint
from meshsim.core.events import RequestFinished, RequestStarted
from meshsim.core.status import StatusCode
from meshsim.runtime.balancer import Balancer
from meshsim.runtime.observer import Observer
from meshsim.runtime.transport import Transport

Finished = Callable[[RequestFinished], None]


class MeshChannel:
    """One client's channel to one service: a balancer's picker in front of a transport.

    Every call started here ends in exactly one RequestFinished on the bus, with the
    status it ended with; a call for which no endpoint is pickable ends at once with
    UNAVAILABLE, as a gRPC channel in TRANSIENT_FAILURE fails a call that is not
    wait-for-ready.
    """

    def __init__(self, client: str, service: str, balancer: Balancer, transport: Transport, observer: Observer) -> None:
        self.client = client
        self.service = service
        self.balancer = balancer
        self._transport = transport
        self._observer = observer
        self._announce = observer.wants(RequestStarted)

    def start(self, call: CallSpec, on_finished: Finished | None = None) -> None:
        now = trio.current_time()
        if self._announce:
            self._observer.emit(RequestStarted(self.client, self.service, call.pattern, now))
        endpoint = self.balancer.picker.pick(call.key)
        if endpoint is None:
            self._finish(call, None, now, StatusCode.UNAVAILABLE, on_finished)
            return
        endpoint.in_flight += 1
        deadline_at = None if call.deadline is None else now + call.deadline

        def done(status: StatusCode) -> None:
            endpoint.in_flight -= 1
            self._finish(call, endpoint, now, status, on_finished)

        self._transport.start_call(endpoint.name, call, deadline_at, done)

    async def call(self, call: CallSpec) -> RequestFinished:
        """Start a call and wait for how it ended (for code that wants one task per call)."""
        finished = trio.Event()
        result: list[RequestFinished] = []

        def store(event: RequestFinished) -> None:
            result.append(event)
            finished.set()

        self.start(call, store)
        await finished.wait()
        return result[0]

    def _finish(
        self,
        call: CallSpec,
        endpoint: Endpoint | None,
        started: float,
        status: StatusCode,
        on_finished: Finished | None,
    ) -> None:
        event = RequestFinished(
            client=self.client,
            service=self.service,
            endpoint=None if endpoint is None else endpoint.name,
            pattern=call.pattern,
            status=status,
            started=started,
            finished=trio.current_time(),
            key=call.key,
        )
        self._observer.emit(event)
        if on_finished is not None:
            on_finished(event)
