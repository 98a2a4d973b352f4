"""The call path's edges that live mode reaches: A6's commit, an endpoint gone from under a call,
replicas that discovery adds, and when the membership actor may close a removed endpoint."""

from __future__ import annotations

import random
from collections.abc import Callable

import trio
import trio.testing

from meshsim.core.breaker import BreakerConfig, ConcurrencyLimit
from meshsim.core.calls import CallSpec, Pattern
from meshsim.core.endpoint import Endpoint
from meshsim.core.events import BreakerChanged, RequestFinished
from meshsim.core.health import HealthConfig
from meshsim.core.pickers import BalancerConfig
from meshsim.core.policies import CallPolicies
from meshsim.core.retry import RetryPolicy
from meshsim.core.status import HealthStatus, StatusCode
from meshsim.runtime.balancer import Balancer, EndpointsResolved
from meshsim.runtime.channel import MeshChannel
from meshsim.runtime.membership import Membership
from meshsim.runtime.observer import Observer
from meshsim.runtime.timers import TimerQueue
from meshsim.runtime.transport import EndpointGone, OnAnswer, OnDone

RETRY = RetryPolicy(max_attempts=3, initial_backoff=0.01)


class Handle:
    def __init__(self, transport: HeldCalls, on_done: OnDone) -> None:
        self.transport = transport
        self.on_done = on_done
        self.ended = False

    def end(self, status: StatusCode) -> None:
        if not self.ended:
            self.ended = True
            self.transport.timers.call_soon(self.on_done, status, None)

    def cancel(self, status: StatusCode) -> None:
        self.end(status)


class HeldCalls:
    """A transport that holds every attempt until the test ends it; endpoints in `gone` refuse."""

    def __init__(self, timers: TimerQueue) -> None:
        self.timers = timers
        self.attempts: list[tuple[str, Handle]] = []
        self.gone: set[str] = set()

    def start_call(
        self,
        endpoint: str,
        call: CallSpec,
        deadline_at: float | None,
        on_done: OnDone,
        on_answer: OnAnswer | None = None,  # these tests commit by hand, as a live invocation does
    ) -> Handle:
        if endpoint in self.gone:
            raise EndpointGone(endpoint)
        handle = Handle(self, on_done)
        self.attempts.append((endpoint, handle))
        return handle

    async def check_health(self, endpoint: str, service: str) -> HealthStatus:
        return HealthStatus.SERVING


def plain_balancer(endpoints: tuple[str, ...], observer: Observer) -> Balancer:
    """Round robin, no health checks: the endpoints are pickable until the test says otherwise."""
    return Balancer(
        "b",
        "c",
        "s",
        BalancerConfig(),
        HealthConfig(enabled=False),
        [Endpoint(e, index=i) for i, e in enumerate(endpoints)],
        random.Random(1),
        observer,
    )


def with_channel(
    test: Callable[[MeshChannel, HeldCalls, list[RequestFinished]], object],
    policies: CallPolicies,
    endpoints: tuple[str, ...] = ("a", "b"),
    observer: Observer | None = None,
) -> list[RequestFinished]:
    observer = observer or Observer()
    finished: list[RequestFinished] = []
    observer.subscribe(RequestFinished, finished.append)

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            timers = TimerQueue()
            nursery.start_soon(timers.run)
            balancer = plain_balancer(endpoints, observer)
            transport = HeldCalls(timers)
            channel = MeshChannel("c", "s", balancer, transport, observer, timers, policies, random.Random(2))
            await test(channel, transport, finished)  # type: ignore[misc]
            nursery.cancel_scope.cancel()

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    return finished


def call() -> CallSpec:
    return CallSpec(client="c", service="s", pattern=Pattern.BIDI)


def test_a_committed_attempt_alone_decides_and_the_other_hedges_are_cancelled() -> None:
    async def test(channel: MeshChannel, transport: HeldCalls, finished: list[RequestFinished]) -> None:
        run = channel.start(call(), policies=CallPolicies(retry=RETRY))
        await trio.sleep(0.001)
        (_, first), *_ = transport.attempts
        run.commit(first)
        first.end(StatusCode.UNAVAILABLE)  # retryable, but the call had answered: no retry
        await trio.sleep(1)

    finished = with_channel(test, CallPolicies())
    assert [(f.status, f.attempts) for f in finished] == [(StatusCode.UNAVAILABLE, 1)]


def test_a_call_committed_while_it_waits_for_a_slot_commits_its_first_attempt() -> None:
    async def test(channel: MeshChannel, transport: HeldCalls, finished: list[RequestFinished]) -> None:
        retried = CallPolicies(retry=RETRY)
        channel.start(call(), policies=retried)
        queued = channel.start(call(), policies=retried)
        assert queued.queued
        queued.commit()  # its requests outgrew the retry buffer before it had a slot
        assert not queued.done
        transport.attempts[0][1].end(StatusCode.OK)
        await trio.sleep(0.001)
        assert len(transport.attempts) == 2
        transport.attempts[1][1].end(StatusCode.UNAVAILABLE)
        await trio.sleep(1)

    finished = with_channel(test, CallPolicies(limits=ConcurrencyLimit(max_requests=1, max_pending=1)))
    assert [(f.status, f.attempts) for f in finished] == [(StatusCode.OK, 1), (StatusCode.UNAVAILABLE, 1)]


def test_an_endpoint_gone_from_the_transport_fails_the_attempt_and_the_retry_goes_elsewhere() -> None:
    async def test(channel: MeshChannel, transport: HeldCalls, finished: list[RequestFinished]) -> None:
        transport.gone.add("a")
        for _ in range(2):
            channel.start(call(), policies=CallPolicies(retry=RETRY))
        await trio.sleep(1)
        for _, handle in transport.attempts:
            handle.end(StatusCode.OK)
        await trio.sleep(1)

    finished = with_channel(test, CallPolicies())
    assert [f.status for f in finished] == [StatusCode.OK, StatusCode.OK]
    assert {f.endpoint for f in finished} == {"b"}


def test_a_replica_discovery_adds_gets_its_own_breaker() -> None:
    observer = Observer()
    moves: list[BreakerChanged] = []
    observer.subscribe(BreakerChanged, moves.append)
    breaker = BreakerConfig(window_size=2, minimum_calls=2, wait_duration_in_open=60)

    async def test(channel: MeshChannel, transport: HeldCalls, finished: list[RequestFinished]) -> None:
        channel.balancer.handle(EndpointsResolved(("c",)))  # a and b leave, c arrives
        for _ in range(2):
            channel.start(call())
            await trio.sleep(0.001)
            transport.attempts[-1][1].end(StatusCode.UNAVAILABLE)
            await trio.sleep(0.001)

    with_channel(test, CallPolicies(replica_breaker=breaker), observer=observer)
    assert [(m.target, m.state) for m in moves] == [("c", "OPEN")]


class StaticResolver:
    source = "test"

    def __init__(self, answer: tuple[str, ...]) -> None:
        self.answer = answer

    async def resolve(self) -> tuple[str, ...]:
        return self.answer


class Connections:
    def __init__(self) -> None:
        self.closed: list[str] = []

    def open(self, endpoint: str) -> None:
        pass

    async def close_endpoint(self, endpoint: str) -> None:
        self.closed.append(endpoint)


async def test_a_removed_endpoint_closes_only_once_the_balancer_has_let_it_go() -> None:
    observer = Observer()
    balancer = plain_balancer(("a", "b"), observer)
    connections = Connections()
    membership = Membership("m", StaticResolver(("b",)), 1.0, balancer, connections, observer)
    await membership.refresh()
    # The balancer has not read its mailbox yet: "a" may still be picked, so it stays open.
    assert connections.closed == []
    balancer.handle(balancer.mailbox.receive_nowait())
    assert [e.name for e in balancer.endpoints] == ["b"]
    await membership.refresh()
    assert connections.closed == ["a"]
