"""The call path under the resilience policies, end to end through the simulator."""

from __future__ import annotations

import itertools
import logging
import random
from collections.abc import Callable
from pathlib import Path

import attrs
import pytest
import trio
import trio.testing

from meshsim.core.breaker import BreakerConfig
from meshsim.core.calls import CallSpec
from meshsim.core.endpoint import Endpoint
from meshsim.core.events import AttemptFinished, AttemptKind, BreakerChanged, RequestFinished, RetryRefused
from meshsim.core.health import HealthConfig
from meshsim.core.pickers import BalancerConfig
from meshsim.core.policies import CallPolicies
from meshsim.core.report import Report
from meshsim.core.retry import HedgingPolicy, RetryPolicy
from meshsim.core.scenario import Scenario
from meshsim.core.scenario_loader import load_scenario
from meshsim.core.status import HealthStatus, StatusCode
from meshsim.runtime.balancer import Balancer
from meshsim.runtime.channel import MeshChannel
from meshsim.runtime.observer import Observer
from meshsim.runtime.timers import TimerQueue
from meshsim.runtime.transport import OnDone
from meshsim.sim.runner import run_scenario

HEADER = """\
schema = "meshsim/v1"
seed = 3
duration = "{duration}"
drain = "{drain}"

[[service]]
name = "api"
replicas = {replicas}
latency = "{latency}"
"""


@attrs.define
class Log:
    report: Report
    calls: list[RequestFinished]
    attempts: list[AttemptFinished]
    refused: list[RetryRefused]


def simulate(
    write_scenario: Callable[[str], Path],
    body: str,
    *,
    replicas: int = 2,
    duration: str = "2s",
    drain: str = "5s",
    latency: str = "10ms",
    change: Callable[[Scenario], Scenario] | None = None,
) -> Log:
    text = HEADER.format(duration=duration, drain=drain, replicas=replicas, latency=latency) + body
    scenario = load_scenario(write_scenario(text))
    if change is not None:
        scenario = change(scenario)
    observer = Observer()
    log = Log(report=None, calls=[], attempts=[], refused=[])  # type: ignore[arg-type]
    observer.subscribe(RequestFinished, log.calls.append)
    observer.subscribe(AttemptFinished, log.attempts.append)
    observer.subscribe(RetryRefused, log.refused.append)
    log.report = run_scenario(scenario, observer=observer)
    assert len(log.calls) == log.report.totals.requests
    return log


def test_first_ok_wins_and_the_other_hedge_is_cancelled(write_scenario: Callable[[str], Path]) -> None:
    log = simulate(
        write_scenario,
        """
[health]
enabled = false

[hedging]
max_attempts = 2
hedging_delay = "20ms"

[[client]]
name = "c"
concurrency = 1

[[fault]]
at = "0s"
action = "latency"
target = "api/1"
multiply = 10
""",
    )
    assert all(call.status is StatusCode.OK for call in log.calls)
    hedged = [a for a in log.attempts if a.kind is AttemptKind.HEDGE]
    assert hedged
    cancelled = [a for a in log.attempts if a.status is StatusCode.CANCELLED]
    assert cancelled, "the slow attempt of a hedged call must be called off"
    for loser in cancelled:
        winner = next(
            a for a in log.attempts if a.status is StatusCode.OK and a.finished == loser.finished and a is not loser
        )
        assert winner.endpoint != loser.endpoint
    # A slow first attempt is overtaken: no call takes the slow replica's 100 ms.
    assert max(c.finished - c.started for c in log.calls) < 0.05


def test_a_fatal_status_ends_a_hedged_call(write_scenario: Callable[[str], Path]) -> None:
    log = simulate(
        write_scenario,
        """
[health]
enabled = false

[hedging]
max_attempts = 3
hedging_delay = "5ms"
non_fatal_status_codes = ["UNAVAILABLE"]

[[client]]
name = "c"
rate = 50

[[fault]]
at = "0s"
action = "errors"
target = "api"
rate = 1.0
status = "INTERNAL"
""",
    )
    assert {c.status for c in log.calls} == {StatusCode.INTERNAL}
    # The first INTERNAL answer (after 10 ms) ends the call; hedges sent meanwhile are cancelled.
    assert all(c.finished - c.started == 0.01 or abs(c.finished - c.started - 0.01) < 1e-9 for c in log.calls)


def test_deadline_shorter_than_the_backoff(write_scenario: Callable[[str], Path]) -> None:
    log = simulate(
        write_scenario,
        """
[health]
enabled = false

[retry]
max_attempts = 3
initial_backoff = "1s"
jitter = 0

[[client]]
name = "c"
rate = 20
deadline = "100ms"

[[fault]]
at = "0s"
action = "kill"
target = "api"
""",
    )
    assert log.calls
    for call in log.calls:
        assert call.status is StatusCode.DEADLINE_EXCEEDED
        assert call.attempts == 1
        assert abs(call.finished - call.started - 0.1) < 1e-9


def test_no_call_outlives_its_deadline_and_the_attempt_that_hits_it_records_it(
    write_scenario: Callable[[str], Path],
) -> None:
    log = simulate(
        write_scenario,
        """
[health]
enabled = false

[retry]
max_attempts = 5
initial_backoff = "10ms"
retryable_status_codes = ["UNAVAILABLE", "DEADLINE_EXCEEDED"]
per_attempt_timeout = "40ms"
previous_hosts = true  # "retried elsewhere"

[[client]]
name = "c"
rate = 100
deadline = "150ms"

[[fault]]
at = "0s"
action = "blackhole"
target = "api/1"
""",
        latency="30ms",
    )
    for call in log.calls:
        assert call.finished - call.started <= 0.15 + 1e-9
    timed_out = [a for a in log.attempts if a.endpoint == "api/1"]
    assert timed_out
    # Blackholed attempts end at their per-attempt timeout and are retried elsewhere.
    assert all(a.status is StatusCode.DEADLINE_EXCEEDED for a in timed_out)
    assert all(abs(a.finished - a.started - 0.04) < 1e-9 for a in timed_out)
    assert all(c.status is StatusCode.OK for c in log.calls)


def test_retries_with_previous_hosts_prefer_a_replica_not_yet_tried(write_scenario: Callable[[str], Path]) -> None:
    log = simulate(
        write_scenario,
        """
[health]
enabled = false

[balancer]
policy = "random"

[retry]
max_attempts = 3
initial_backoff = "1ms"
previous_hosts = true

[[client]]
name = "c"
rate = 200

[[fault]]
at = "0s"
action = "errors"
target = "api/0"
rate = 1.0
""",
        replicas=3,
    )
    retried = [c for c in log.calls if c.attempts > 1]
    assert retried
    assert all(c.status is StatusCode.OK and c.endpoint != "api/0" for c in retried)
    assert not any(a.kind is AttemptKind.RETRY and a.endpoint == "api/0" for a in log.attempts)


def test_pushback_sets_the_wait_or_stops_retrying(write_scenario: Callable[[str], Path]) -> None:
    body = """
[health]
enabled = false

[retry]
max_attempts = 2
initial_backoff = "1ms"

[[client]]
name = "c"
rate = 20

[[fault]]
at = "0s"
action = "errors"
target = "api"
rate = 1.0
pushback_ms = {pushback}
"""
    waited = simulate(write_scenario, body.format(pushback=300), replicas=1)
    for call in waited.calls:
        assert call.attempts == 2
        assert abs(call.finished - call.started - (0.01 + 0.3 + 0.01)) < 1e-9
    stopped = simulate(write_scenario, body.format(pushback=-1), replicas=1)
    assert all(call.attempts == 1 for call in stopped.calls)


def test_retries_waiting_in_backoff_count_against_the_budget(write_scenario: Callable[[str], Path]) -> None:
    log = simulate(
        write_scenario,
        """
[health]
enabled = false

[retry]
max_attempts = 2
initial_backoff = "500ms"
jitter = 0

[retry_budget]
budget_percent = 0
min_retry_concurrency = 1

[[client]]
name = "c"
rate = 50

[[fault]]
at = "0s"
action = "errors"
target = "api"
rate = 1.0
""",
        replicas=1,
    )
    # One retry at a time may wait its 500 ms backoff; every call failing meanwhile is refused one.
    assert log.refused
    assert {r.reason for r in log.refused} == {"budget"}
    assert log.report.counts.retries + len(log.refused) == log.report.totals.requests
    assert log.report.counts.retries <= 2 / 0.51 + 1


def test_calls_in_backoff_at_the_end_of_the_drain_end_cancelled(write_scenario: Callable[[str], Path]) -> None:
    log = simulate(
        write_scenario,
        """
[health]
enabled = false

[retry]
max_attempts = 3
initial_backoff = "10s"
jitter = 0

[[client]]
name = "c"
rate = 20

[[fault]]
at = "0s"
action = "kill"
target = "api"
""",
        drain="1s",
    )
    assert log.calls
    assert all(c.status is StatusCode.CANCELLED for c in log.calls)
    assert max(c.finished for c in log.calls) <= 3.0


def test_a_single_replica_is_never_ejected(write_scenario: Callable[[str], Path]) -> None:
    log = simulate(
        write_scenario,
        """
[outlier_detection]
interval = "100ms"
max_ejection_percent = 100

[outlier_detection.consecutive_failures]
threshold = 2

[[client]]
name = "c"
rate = 100

[[fault]]
at = "0s"
action = "errors"
target = "api"
rate = 1.0
""",
        replicas=1,
    )
    assert log.report.ejections == ()
    assert log.report.unrouted.requests == 0


def test_all_replicas_failing_leaves_one_in_rotation(write_scenario: Callable[[str], Path]) -> None:
    log = simulate(
        write_scenario,
        """
[outlier_detection]
interval = "100ms"
base_ejection_time = "10s"
max_ejection_percent = 100

[outlier_detection.consecutive_failures]
threshold = 2

[[client]]
name = "c"
rate = 100

[[fault]]
at = "0s"
action = "errors"
target = "api"
rate = 1.0
""",
        replicas=4,
    )
    assert len({j.endpoint for j in log.report.ejections}) == 3
    assert log.report.unrouted.requests == 0


def test_concurrency_limit_queues_then_overflows(write_scenario: Callable[[str], Path]) -> None:
    log = simulate(
        write_scenario,
        """
[health]
enabled = false

[concurrency_limit]
max_requests = 1
max_pending = 1

[[client]]
name = "c"
concurrency = 3
""",
        duration="200ms",
    )
    refused = [c for c in log.calls if c.attempts == 0]
    assert refused
    assert all(c.status is StatusCode.UNAVAILABLE and c.finished == c.started for c in refused)
    served = [c for c in log.calls if c.attempts]
    assert all(c.status is StatusCode.OK for c in served)
    assert log.report.not_attempted == len(refused)


def test_a_per_endpoint_limit_keeps_each_replica_at_its_cap(write_scenario: Callable[[str], Path]) -> None:
    body = """
[health]
enabled = false

[concurrency_limit]
max_requests_per_endpoint = 1

[[client]]
name = "c"
concurrency = 3
"""
    log = simulate(write_scenario, body, duration="200ms")
    in_flight: dict[str | None, list[tuple[float, float]]] = {}
    for attempt in log.attempts:
        if attempt.endpoint is not None:
            in_flight.setdefault(attempt.endpoint, []).append((attempt.started, attempt.finished))
    for spans in in_flight.values():
        spans.sort()
        assert all(later[0] >= earlier[1] for earlier, later in itertools.pairwise(spans))
    # Three callers, two replicas that take one call each: the third finds no room.
    full = [c for c in log.calls if c.status is StatusCode.UNAVAILABLE]
    assert full and all(c.endpoint is None for c in full)
    unlimited = simulate(write_scenario, body.replace("max_requests_per_endpoint = 1", "max_requests = 10"))
    assert all(c.status is StatusCode.OK for c in unlimited.calls)


def test_an_open_service_breaker_fails_calls_fast(write_scenario: Callable[[str], Path]) -> None:
    log = simulate(
        write_scenario,
        """
[health]
enabled = false

[circuit_breaker.service]
window_size = 10
minimum_calls = 10
wait_duration_in_open = "10s"

[[client]]
name = "c"
rate = 100

[[fault]]
at = "0s"
action = "errors"
target = "api"
rate = 1.0
""",
    )
    assert [b.state for b in log.report.breakers] == ["OPEN"]
    # Calls already admitted when the tenth failure opens it still run; nothing after.
    assert 10 <= sum(1 for c in log.calls if c.attempts) <= 12
    fast = [c for c in log.calls if c.attempts == 0]
    assert fast
    assert all(c.status is StatusCode.UNAVAILABLE and c.finished == c.started for c in fast)


def test_a_backoff_multiplier_too_large_for_a_float_waits_max_backoff(write_scenario: Callable[[str], Path]) -> None:
    # 1e200 ** 2 overflows a float: the scenario still runs, each wait simply stops at max_backoff.
    # (A file may say at most 100; the policy is made here, as a program using the runtime would.)
    def huge(scenario: Scenario) -> Scenario:
        retry = scenario.policies.retry
        assert retry is not None
        policies = attrs.evolve(scenario.policies, retry=attrs.evolve(retry, backoff_multiplier=1e200))
        return attrs.evolve(scenario, policies=policies)

    log = simulate(
        write_scenario,
        """
[health]
enabled = false

[retry]
max_attempts = 5
initial_backoff = "10ms"
max_backoff = "50ms"
backoff_multiplier = 100
jitter = 0

[[client]]
name = "c"
concurrency = 1

[[fault]]
at = "0s"
action = "errors"
target = "api"
rate = 1.0
""",
        duration="1s",
        change=huge,
    )
    calls = [c for c in log.calls if c.started > 0]  # the first call starts before the fault
    assert len(calls) >= 4
    assert {(c.status, c.attempts) for c in calls} == {(StatusCode.UNAVAILABLE, 5)}
    # One caller: the attempts of each call follow one another, five by five.
    later = [a for a in log.attempts if a.started > 0]
    for call, attempts in zip(calls, [later[i : i + 5] for i in range(0, len(later), 5)], strict=True):
        waits = [round(later.started - earlier.finished, 9) for earlier, later in itertools.pairwise(attempts)]
        assert waits == [0.01, 0.05, 0.05, 0.05]
        assert attempts[0].started == call.started and attempts[-1].finished == call.finished


# --- an exception on the call path -------------------------------------------------------


class ScriptedAttempt:
    def __init__(self, on_done: OnDone, cancel_error: Exception | None) -> None:
        self.on_done = on_done
        self.cancel_error = cancel_error
        self.ended = False

    def end(self, status: StatusCode) -> None:
        if not self.ended:
            self.ended = True
            self.on_done(status, None)

    def cancel(self, status: StatusCode) -> None:
        if self.cancel_error is not None:
            raise self.cancel_error
        self.end(status)


class Scripted:
    """A transport whose attempts end a millisecond after they start with the next status of `script`;
    an exception in the script is raised by start_call instead. Handles raise `cancel_error` when cancelled."""

    def __init__(
        self, timers: TimerQueue, script: list[StatusCode | Exception], cancel_error: Exception | None = None
    ) -> None:
        self.timers = timers
        self.script = script
        self.cancel_error = cancel_error

    def start_call(self, endpoint: str, call: CallSpec, deadline_at: float | None, on_done: OnDone) -> ScriptedAttempt:
        outcome = self.script.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        attempt = ScriptedAttempt(on_done, self.cancel_error)
        self.timers.call_at(self.timers.now() + 0.001, attempt.end, outcome)
        return attempt

    async def check_health(self, endpoint: str, service: str) -> HealthStatus:
        return HealthStatus.SERVING


@attrs.frozen
class BrokenBackoff(RetryPolicy):
    def backoff(self, step: int, rng: random.Random) -> float:
        raise ArithmeticError("no wait can be computed")


RETRY_NOW = RetryPolicy(max_attempts=3, initial_backoff=0.01, jitter=0.0)
METHOD = "/mesh.v1.MeshService/Process"


@attrs.frozen
class Failure:
    where: str
    script: list[StatusCode | Exception]
    policies: CallPolicies = attrs.field(factory=CallPolicies)
    deadline: float | None = None
    cancel_error: Exception | None = None
    attempts: tuple[StatusCode, ...] = (StatusCode.INTERNAL,)


FAILURES = [
    Failure("the first attempt", [RuntimeError("the transport broke")]),
    Failure(
        "a retry",
        [StatusCode.UNAVAILABLE, RuntimeError("the transport broke")],
        CallPolicies(retry=RETRY_NOW),
        attempts=(StatusCode.UNAVAILABLE, StatusCode.INTERNAL),
    ),
    Failure(
        "a hedge",
        [StatusCode.OK, RuntimeError("the transport broke")],
        CallPolicies(hedging=HedgingPolicy(max_attempts=2, hedging_delay=0.0005)),
        # The hedge fails as it starts; the first attempt, still running, is called off.
        attempts=(StatusCode.INTERNAL, StatusCode.INTERNAL),
    ),
    Failure(
        "the backoff",
        [StatusCode.UNAVAILABLE],
        CallPolicies(retry=BrokenBackoff(max_attempts=3)),
        attempts=(StatusCode.UNAVAILABLE,),
    ),
    Failure(
        "the deadline",
        [StatusCode.OK],
        CallPolicies(retry=RETRY_NOW),
        deadline=0.0005,
        cancel_error=RuntimeError("the transport cannot cancel"),
        attempts=(StatusCode.OK,),  # the attempt the deadline could not cancel ends on its own
    ),
]


@pytest.mark.parametrize("failure", FAILURES, ids=[f.where for f in FAILURES])
def test_an_exception_on_the_call_path_ends_the_call_internal(
    failure: Failure, caplog: pytest.LogCaptureFixture
) -> None:
    observer = Observer()
    calls: list[RequestFinished] = []
    attempts: list[AttemptFinished] = []
    observer.subscribe(RequestFinished, calls.append)
    observer.subscribe(AttemptFinished, attempts.append)
    delivered: list[RequestFinished] = []

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            timers = TimerQueue()
            nursery.start_soon(timers.run)
            balancer = Balancer(
                "b",
                "c",
                "api",
                BalancerConfig(),
                HealthConfig(enabled=False),
                [Endpoint("api/0", index=0), Endpoint("api/1", index=1)],
                random.Random(1),
                observer,
            )
            transport = Scripted(timers, list(failure.script), failure.cancel_error)
            channel = MeshChannel("c", "api", balancer, transport, observer, timers, failure.policies)
            spec = CallSpec(client="c", service="api", deadline=failure.deadline, method=METHOD)
            channel.start(spec, delivered.append)
            await trio.sleep(1)
            assert channel.active_calls == 0 and channel.pending_calls == 0
            assert all(e.in_flight == 0 for e in balancer.endpoints)
            nursery.cancel_scope.cancel()

    with caplog.at_level(logging.WARNING, logger="meshsim.runtime.channel"):
        trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    assert [(c.status, c.attempts) for c in calls] == [(StatusCode.INTERNAL, len(failure.script))]
    assert delivered == calls
    assert tuple(a.status for a in attempts) == failure.attempts
    (line,) = [r for r in caplog.records if r.name == "meshsim.runtime.channel"]
    assert line.levelno == logging.WARNING
    message = line.getMessage()
    assert "c -> api" in message and METHOD in message and "INTERNAL" in message
    assert "\n" not in message
    error = next(
        e
        for e in [*failure.script, failure.cancel_error, ArithmeticError("no wait can be computed")]
        if isinstance(e, Exception)
    )
    assert f"{type(error).__name__}: {error}" in message


def test_cancelled_hedges_give_a_half_open_replica_breaker_its_permits_back() -> None:
    """Hedges that lose are cancelled and record nothing; in HALF_OPEN each held one of the few
    permits, so without giving them back the replica's breaker waits forever and the replica is
    never tried again."""
    observer = Observer()
    moves: list[BreakerChanged] = []
    observer.subscribe(BreakerChanged, moves.append)
    config = BreakerConfig(minimum_calls=2, window_size=2, wait_duration_in_open=1.0, permitted_calls_in_half_open=2)
    policies = CallPolicies(replica_breaker=config, hedging=HedgingPolicy(max_attempts=2, hedging_delay=0.0005))

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            timers = TimerQueue()
            nursery.start_soon(timers.run)
            balancer = Balancer(
                "b",
                "c",
                "api",
                BalancerConfig(),
                HealthConfig(enabled=False),
                [Endpoint("api/0", index=0)],
                random.Random(1),
                observer,
            )
            # Two failures open the breaker; after the wait, every call's first attempt answers at
            # once (OK) while its hedge, sent 0.5 ms later to the same replica, is cancelled.
            script: list[StatusCode | Exception] = [StatusCode.UNAVAILABLE] * 2 + [StatusCode.OK] * 40
            transport = Slow(timers, script)
            channel = MeshChannel("c", "api", balancer, transport, observer, timers, policies)
            for _ in range(2):
                channel.start(CallSpec(client="c", service="api", method=METHOD))
                await trio.sleep(0.01)
            await trio.sleep(1.5)
            for _ in range(6):
                channel.start(CallSpec(client="c", service="api", method=METHOD))
                await trio.sleep(0.01)
            nursery.cancel_scope.cancel()

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    assert [m.state for m in moves] == ["OPEN", "HALF_OPEN", "CLOSED"], moves


class Slow(Scripted):
    """Attempts end 1 ms after they start; the hedge of a call that already answered is cancelled."""

    def start_call(self, endpoint: str, call: CallSpec, deadline_at: float | None, on_done: OnDone) -> ScriptedAttempt:
        outcome = self.script.pop(0)
        assert not isinstance(outcome, Exception)
        attempt = ScriptedAttempt(on_done, None)
        self.timers.call_at(self.timers.now() + 0.001, attempt.end, outcome)
        return attempt
