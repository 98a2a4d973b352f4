"""The simulated replica's rules: capacity and queueing, deadlines, kill, blackhole, errors, health."""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable

import attrs
import trio
import trio.testing

from meshsim.core.calls import CallSpec, Pattern
from meshsim.core.distributions import Constant
from meshsim.core.faults import Effect
from meshsim.core.faults.blackhole import Blackhole
from meshsim.core.faults.errors import Errors
from meshsim.core.faults.health import Health
from meshsim.core.faults.kill import Kill
from meshsim.core.faults.latency import Latency
from meshsim.core.scenario import FaultConfig, ServiceConfig
from meshsim.core.status import HealthStatus, StatusCode
from meshsim.runtime.timers import TimerQueue
from meshsim.sim.replica import SimReplica

UNARY = CallSpec(client="c", service="api")

Outcome = tuple[str, float, StatusCode]


def service(**changes: object) -> ServiceConfig:
    base = ServiceConfig(name="api", replicas=1, latency=Constant(1.0), message_latency=Constant(0.0))
    return attrs.evolve(base, **changes)


def fault(effect: Effect) -> FaultConfig:
    return FaultConfig(
        index=0, at=0.0, duration=None, action=type(effect).__name__.lower(), target="api/0", effect=effect
    )


def simulate(
    config: ServiceConfig, script: Callable[[SimReplica, Callable[..., None]], Awaitable[None]]
) -> list[Outcome]:
    """Run `script` against one replica; return (label, end time, status) per finished call, in end order."""
    outcomes: list[Outcome] = []

    async def main() -> None:
        timers = TimerQueue()
        replica = SimReplica("api/0", config, 0, timers, random.Random(0))

        def start(label: str, call: CallSpec = UNARY, deadline: float | None = None) -> None:
            deadline_at = None if deadline is None else trio.current_time() + deadline
            replica.start_call(call, deadline_at, lambda s, _: outcomes.append((label, trio.current_time(), s)))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(timers.run)
            await script(replica, start)
            await trio.sleep(100)
            nursery.cancel_scope.cancel()

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    return outcomes


def test_capacity_queues_in_arrival_order() -> None:
    async def script(replica: SimReplica, start: Callable[..., None]) -> None:
        for label in "abc":
            start(label)

    assert simulate(service(capacity=2), script) == [
        ("a", 1.0, StatusCode.OK),
        ("b", 1.0, StatusCode.OK),
        ("c", 2.0, StatusCode.OK),
    ]


def test_full_queue_rejects_with_resource_exhausted() -> None:
    async def script(replica: SimReplica, start: Callable[..., None]) -> None:
        for label in "abc":
            start(label)

    assert simulate(service(capacity=1, queue_limit=1), script) == [
        ("c", 0.0, StatusCode.RESOURCE_EXHAUSTED),
        ("a", 1.0, StatusCode.OK),
        ("b", 2.0, StatusCode.OK),
    ]


def test_deadline_ends_a_call_in_service_and_in_the_queue() -> None:
    async def script(replica: SimReplica, start: Callable[..., None]) -> None:
        start("serving", deadline=0.5)
        start("queued", deadline=0.25)
        start("next")

    assert simulate(service(capacity=1), script) == [
        ("queued", 0.25, StatusCode.DEADLINE_EXCEEDED),
        ("serving", 0.5, StatusCode.DEADLINE_EXCEEDED),
        ("next", 1.5, StatusCode.OK),  # the freed slot goes to the next live call in the queue
    ]


def test_streams_take_a_message_latency_per_message() -> None:
    stream = CallSpec(client="c", service="api", pattern=Pattern.BIDI, messages=4)

    async def script(replica: SimReplica, start: Callable[..., None]) -> None:
        start("bidi", stream)
        start("unary", attrs.evolve(UNARY, messages=4))

    assert simulate(service(message_latency=Constant(0.5)), script) == [
        ("unary", 1.0, StatusCode.OK),
        ("bidi", 3.0, StatusCode.OK),
    ]


def test_kill_fails_everything_held_and_refuses_new_calls_until_restart() -> None:
    kill = fault(Kill())

    async def script(replica: SimReplica, start: Callable[..., None]) -> None:
        start("serving")
        start("queued")
        await trio.sleep(0.5)
        replica.apply(kill)
        start("refused")
        assert await replica.check_health("api") is HealthStatus.UNREACHABLE
        await trio.sleep(0.5)
        replica.clear(kill)
        start("after restart")

    assert simulate(service(capacity=1), script) == [
        ("serving", 0.5, StatusCode.UNAVAILABLE),
        ("queued", 0.5, StatusCode.UNAVAILABLE),
        ("refused", 0.5, StatusCode.UNAVAILABLE),
        ("after restart", 2.0, StatusCode.OK),
    ]


def test_blackhole_holds_calls_until_deadline_or_until_it_lifts() -> None:
    hole = fault(Blackhole())

    async def script(replica: SimReplica, start: Callable[..., None]) -> None:
        replica.apply(hole)
        start("with deadline", deadline=2.0)
        start("without deadline")
        with trio.move_on_after(1.0):
            await replica.check_health("api")
            raise AssertionError("a blackholed replica must not answer health checks")
        await trio.sleep(2.0)
        replica.clear(hole)

    assert simulate(service(), script) == [
        ("with deadline", 2.0, StatusCode.DEADLINE_EXCEEDED),
        ("without deadline", 4.0, StatusCode.OK),  # resumed at 3 s, served in 1 s
    ]


def test_latency_and_error_faults_compose() -> None:
    async def script(replica: SimReplica, start: Callable[..., None]) -> None:
        replica.apply(fault(Latency(multiply=2.0)))
        replica.apply(fault(Latency(add=0.5)))
        replica.apply(fault(Errors(rate=1.0, status=StatusCode.INTERNAL)))
        start("a")

    assert simulate(service(), script) == [("a", 2.5, StatusCode.INTERNAL)]


def test_error_rate_is_drawn_per_call() -> None:
    async def script(replica: SimReplica, start: Callable[..., None]) -> None:
        for n in range(2000):
            start(str(n))

    outcomes = simulate(service(error_rate=0.25, error_status=StatusCode.UNAVAILABLE), script)
    failed = sum(1 for _, _, status in outcomes if status is StatusCode.UNAVAILABLE)
    assert len(outcomes) == 2000
    assert 400 < failed < 600


def test_health_answers() -> None:
    answers: list[HealthStatus] = []

    async def script(replica: SimReplica, start: Callable[..., None]) -> None:
        answers.append(await replica.check_health("api"))
        answers.append(await replica.check_health(""))
        answers.append(await replica.check_health("other.Service"))
        replica.apply(fault(Health(HealthStatus.NOT_SERVING)))
        answers.append(await replica.check_health("api"))
        start("still served")

    outcomes = simulate(service(), script)
    assert answers == [
        HealthStatus.SERVING,
        HealthStatus.SERVING,
        HealthStatus.SERVICE_UNKNOWN,
        HealthStatus.NOT_SERVING,
    ]
    assert outcomes[0][2] is StatusCode.OK
