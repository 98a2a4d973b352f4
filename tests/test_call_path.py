"""The call path under the resilience policies, end to end through the simulator."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path

import attrs

from meshsim.core.events import AttemptFinished, AttemptKind, RequestFinished, RetryRefused
from meshsim.core.report import Report
from meshsim.core.scenario_loader import load_scenario
from meshsim.core.status import StatusCode
from meshsim.runtime.observer import Observer
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
) -> Log:
    text = HEADER.format(duration=duration, drain=drain, replicas=replicas, latency=latency) + body
    scenario = load_scenario(write_scenario(text))
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


def test_retries_prefer_a_replica_not_yet_tried(write_scenario: Callable[[str], Path]) -> None:
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
