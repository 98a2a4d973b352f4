"""The pure resilience state machines: breakers, outlier detection, retries, throttles, budgets, Peak-EWMA.

Time is passed in as a number everywhere, so these tests drive each machine by hand.
"""

from __future__ import annotations

import math
import random
import sys
from collections.abc import Callable
from types import FrameType

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meshsim.core.breaker import BreakerConfig, BreakerState, CircuitBreaker, ConcurrencyLimit
from meshsim.core.endpoint import Endpoint
from meshsim.core.ewma import PeakEwma, PeakEwmaConfig
from meshsim.core.outlier import (
    ConsecutiveFailuresConfig,
    Ejection,
    FailurePercentageConfig,
    OutlierConfig,
    OutlierDetector,
    SuccessRateConfig,
)
from meshsim.core.pickers import BalancerConfig, PeakEwmaPicker, build_picker
from meshsim.core.retry import (
    MAX_ATTEMPTS_CAP,
    BudgetConfig,
    HedgingPolicy,
    RetryBudget,
    RetryPolicy,
    RetryThrottle,
    ThrottleConfig,
)
from meshsim.core.status import SERVER_FAILURES, StatusCode

OK = StatusCode.OK
FAIL = StatusCode.UNAVAILABLE

CLOSED = BreakerState.CLOSED
OPEN = BreakerState.OPEN
HALF_OPEN = BreakerState.HALF_OPEN


# --------------------------------------------------------------------------- circuit breaker


def breaker(**overrides: object) -> CircuitBreaker:
    settings_: dict[str, object] = {
        "window_type": "count",
        "window_size": 10,
        "minimum_calls": 4,
        "failure_rate_threshold": 50.0,
        "slow_call_rate_threshold": 100.0,
        "slow_call_duration": 1.0,
        "wait_duration_in_open": 5.0,
        "permitted_calls_in_half_open": 3,
    }
    settings_.update(overrides)
    return CircuitBreaker(BreakerConfig(**settings_))  # type: ignore[arg-type]


def feed(cb: CircuitBreaker, statuses: list[StatusCode], now: float = 0.0, duration: float = 0.01) -> list[object]:
    """Record each status at `now`; returns what each record() returned."""
    return [cb.record(now, status, duration) for status in statuses]


def open_breaker(now: float = 0.0, **overrides: object) -> CircuitBreaker:
    """A breaker (permitted 3, wait 5 s) that opened at `now`."""
    cb = breaker(minimum_calls=4, window_size=4, **overrides)
    assert feed(cb, [FAIL] * 4, now=now) == [None, None, None, OPEN]
    assert cb.state is OPEN
    return cb


def half_open_breaker(opened_at: float = 0.0, **overrides: object) -> CircuitBreaker:
    """A breaker that has just let its first HALF_OPEN call through (2 permits left)."""
    cb = open_breaker(opened_at, **overrides)
    assert cb.try_acquire(opened_at + 6.0) == (True, HALF_OPEN)
    return cb


def test_breaker_config_defaults_are_resilience4j() -> None:
    config = BreakerConfig()
    assert (config.window_type, config.window_size, config.minimum_calls) == ("count", 100, 100)
    assert (config.failure_rate_threshold, config.slow_call_rate_threshold) == (50.0, 100.0)
    assert (config.slow_call_duration, config.wait_duration_in_open) == (60.0, 60.0)
    assert config.permitted_calls_in_half_open == 10
    assert config.failure_status_codes == SERVER_FAILURES
    assert StatusCode.CANCELLED not in config.failure_status_codes
    assert CircuitBreaker(config).state is CLOSED


def test_concurrency_limit_defaults() -> None:
    assert ConcurrencyLimit() == ConcurrencyLimit(max_requests=1024, max_pending=1024)
    assert ConcurrencyLimit(max_requests=2, max_pending=0).max_pending == 0


def test_breaker_stays_closed_below_minimum_calls_even_at_100_percent_failures() -> None:
    cb = breaker(minimum_calls=5)
    assert feed(cb, [FAIL] * 4) == [None] * 4
    assert cb.state is CLOSED
    assert cb.try_acquire(0.0) == (True, None)
    # The fifth failure meets minimum_calls: 100% >= 50%.
    assert cb.record(0.0, FAIL, 0.01) is OPEN


def test_breaker_opens_exactly_when_failure_rate_reaches_threshold() -> None:
    cb = breaker(minimum_calls=4, window_size=10, failure_rate_threshold=50.0)
    # 1/4 = 25%, 2/5 = 40%: still closed; 3/6 = 50% reaches the threshold.
    assert feed(cb, [OK, OK, OK, FAIL, FAIL]) == [None] * 5
    assert cb.state is CLOSED
    assert cb.record(1.0, FAIL, 0.01) is OPEN
    assert cb.state is OPEN
    assert cb.try_acquire(1.0) == (False, None)


def test_breaker_at_threshold_just_below_does_not_open() -> None:
    cb = breaker(minimum_calls=4, window_size=10, failure_rate_threshold=50.1)
    assert feed(cb, [OK, OK, OK, FAIL, FAIL, FAIL]) == [None] * 6  # 50% < 50.1%
    assert cb.state is CLOSED


def test_count_window_holds_exactly_the_last_window_size_calls() -> None:
    cb = breaker(window_size=4, minimum_calls=4, failure_rate_threshold=40.0)
    # [F, O, O, O] = 25%; then [O, O, O, F] = 25%. The last *five* would be 40%.
    assert feed(cb, [FAIL, OK, OK, OK, FAIL]) == [None] * 5
    assert cb.state is CLOSED


def test_count_window_forgets_old_successes() -> None:
    cb = breaker(window_size=4, minimum_calls=4, failure_rate_threshold=50.0)
    assert feed(cb, [OK] * 9 + [FAIL]) == [None] * 10
    # Only the last four count: [O, O, F, F] = 50% although 2 of 11 calls failed overall.
    assert cb.record(0.0, FAIL, 0.01) is OPEN


def test_count_window_smaller_than_minimum_calls_needs_only_a_full_window() -> None:
    cb = breaker(window_size=4, minimum_calls=10)
    assert feed(cb, [FAIL] * 3) == [None] * 3
    assert cb.record(0.0, FAIL, 0.01) is OPEN


def test_time_window_drops_outcomes_older_than_window_size() -> None:
    cb = breaker(window_type="time", window_size=10, minimum_calls=4)
    for t in (0.0, 1.0, 2.0):
        assert cb.record(t, FAIL, 0.01) is None
    # Eighteen seconds after the last of them, the three old failures are gone: one call < 4.
    assert cb.record(20.0, FAIL, 0.01) is None
    assert cb.state is CLOSED
    for t in (21.0, 22.0):
        assert cb.record(t, FAIL, 0.01) is None
    assert cb.record(23.0, FAIL, 0.01) is OPEN


def test_time_window_keeps_outcomes_younger_than_window_size() -> None:
    cb = breaker(window_type="time", window_size=10, minimum_calls=4)
    for t in (0.0, 1.0, 2.0):
        assert cb.record(t, FAIL, 0.01) is None
    assert cb.record(9.5, FAIL, 0.01) is OPEN


def test_time_window_does_not_cap_the_number_of_calls() -> None:
    # window_size is seconds here, not calls: all twenty calls within 2 s count.
    cb = breaker(window_type="time", window_size=10, minimum_calls=4, failure_rate_threshold=50.0)
    for i in range(10):
        assert cb.record(i * 0.1, OK, 0.01) is None
    for i in range(10, 19):
        assert cb.record(i * 0.1, FAIL, 0.01) is None  # 9/19 < 50% (a 10-call window would be at 90%)
    assert cb.state is CLOSED
    assert cb.record(1.9, FAIL, 0.01) is OPEN  # 10/20


def test_slow_calls_open_the_breaker_via_slow_call_rate() -> None:
    cb = breaker(minimum_calls=4, window_size=10, slow_call_rate_threshold=50.0, slow_call_duration=1.0)
    # Slow means duration >= slow_call_duration: 1.0 is slow, 0.999 is not.
    assert cb.record(0.0, OK, 1.0) is None
    assert cb.record(0.0, OK, 0.999) is None
    assert cb.record(0.0, OK, 0.5) is None
    assert cb.record(0.0, OK, 0.1) is None  # 1/4 slow
    assert cb.record(0.0, OK, 1.0) is None  # 2/5 slow
    assert cb.state is CLOSED
    assert cb.record(0.0, OK, 5.0) is OPEN  # 3/6 = 50% slow, no failures at all


def test_open_rejects_until_wait_has_passed_then_moves_to_half_open() -> None:
    cb = open_breaker(now=10.0)
    for t in (10.0, 12.0, 14.999):
        assert cb.try_acquire(t) == (False, None)
        assert cb.state is OPEN
    assert cb.try_acquire(15.001) == (True, HALF_OPEN)
    assert cb.state is HALF_OPEN


def test_half_open_lets_exactly_the_permitted_calls_through() -> None:
    cb = open_breaker(now=0.0, permitted_calls_in_half_open=3)
    assert cb.try_acquire(6.0) == (True, HALF_OPEN)
    assert cb.try_acquire(6.0) == (True, None)
    assert cb.try_acquire(6.0) == (True, None)
    assert cb.try_acquire(6.0) == (False, None)
    assert cb.try_acquire(100.0) == (False, None)  # still HALF_OPEN, no more permits
    assert cb.state is HALF_OPEN


def test_a_half_open_call_without_an_outcome_gives_its_permit_back() -> None:
    """A hedge that lost, or a call its caller gave up, ends CANCELLED: nothing to record, and in
    HALF_OPEN its permit must come back (resilience4j's releasePermission), or the breaker waits
    forever for the results of calls that will never report one."""
    cb = open_breaker(now=0.0, permitted_calls_in_half_open=2)
    assert cb.try_acquire(6.0) == (True, HALF_OPEN)
    assert cb.try_acquire(6.0) == (True, None)
    assert cb.try_acquire(6.0) == (False, None)
    cb.release()  # one of them was cancelled
    assert cb.try_acquire(6.1) == (True, None)
    assert cb.record(6.2, OK, 0.01) is None
    assert cb.record(6.3, OK, 0.01) is CLOSED
    cb.release()  # CLOSED keeps no permits: nothing to give back
    assert cb.state is CLOSED


def test_releasing_never_lets_more_than_the_permitted_calls_through() -> None:
    cb = half_open_breaker(permitted_calls_in_half_open=2)
    for _ in range(5):
        cb.release()
    assert [cb.try_acquire(6.0)[0] for _ in range(3)] == [True, True, False]


def test_half_open_closes_when_the_permitted_calls_succeed() -> None:
    cb = half_open_breaker()
    assert cb.try_acquire(6.0) == (True, None)
    assert cb.try_acquire(6.0) == (True, None)
    assert cb.record(6.1, OK, 0.01) is None
    assert cb.record(6.2, OK, 0.01) is None
    assert cb.state is HALF_OPEN
    assert cb.record(6.3, OK, 0.01) is CLOSED
    assert cb.state is CLOSED
    assert cb.try_acquire(6.3) == (True, None)
    # The CLOSED window starts empty: minimum_calls (4) again before it can open.
    assert feed(cb, [FAIL] * 3, now=7.0) == [None] * 3
    assert cb.record(7.0, FAIL, 0.01) is OPEN


def test_half_open_reopens_when_enough_permitted_calls_fail() -> None:
    cb = half_open_breaker()
    cb.try_acquire(6.0)
    cb.try_acquire(6.0)
    assert cb.record(6.1, FAIL, 0.01) is None
    assert cb.record(6.2, OK, 0.01) is None
    assert cb.record(6.3, FAIL, 0.01) is OPEN  # 2/3 >= 50%
    # Open again, and the wait counts from the reopening.
    assert cb.try_acquire(11.2) == (False, None)
    assert cb.try_acquire(11.4) == (True, HALF_OPEN)


def test_half_open_closes_when_too_few_permitted_calls_fail() -> None:
    cb = half_open_breaker(permitted_calls_in_half_open=3)
    assert cb.record(6.1, FAIL, 0.01) is None
    assert cb.record(6.2, OK, 0.01) is None
    assert cb.record(6.3, OK, 0.01) is CLOSED  # 1/3 < 50%


def test_half_open_reopens_on_slow_calls() -> None:
    cb = half_open_breaker(slow_call_rate_threshold=50.0)
    assert cb.record(6.1, OK, 2.0) is None
    assert cb.record(6.2, OK, 2.0) is None
    assert cb.record(6.3, OK, 0.1) is OPEN  # 2/3 slow


def test_outcomes_recorded_while_open_do_not_count() -> None:
    cb = open_breaker(now=0.0)
    # Calls admitted before the breaker opened end now: ignored, in either direction.
    assert feed(cb, [OK] * 20, now=1.0) == [None] * 20
    assert feed(cb, [FAIL] * 20, now=2.0) == [None] * 20
    assert cb.state is OPEN
    assert cb.try_acquire(6.0) == (True, HALF_OPEN)
    # Half-open is decided by its own three calls only.
    assert feed(cb, [OK, OK], now=6.0) == [None, None]
    assert cb.record(6.0, OK, 0.01) is CLOSED
    assert feed(cb, [FAIL] * 3, now=7.0) == [None] * 3  # the window restarted empty
    assert cb.state is CLOSED


@pytest.mark.parametrize(
    "status",
    [StatusCode.CANCELLED, StatusCode.NOT_FOUND, StatusCode.INVALID_ARGUMENT, StatusCode.PERMISSION_DENIED],
)
def test_only_failure_status_codes_count_as_failures(status: StatusCode) -> None:
    cb = breaker(minimum_calls=4)
    assert feed(cb, [status] * 20) == [None] * 20
    assert cb.state is CLOSED


@pytest.mark.parametrize("status", sorted(SERVER_FAILURES))
def test_every_server_failure_counts(status: StatusCode) -> None:
    cb = breaker(minimum_calls=4)
    assert feed(cb, [status] * 4) == [None, None, None, OPEN]


def test_failure_status_codes_are_configurable() -> None:
    cb = breaker(minimum_calls=4, failure_status_codes=frozenset({StatusCode.CANCELLED}))
    assert feed(cb, [FAIL] * 10) == [None] * 10  # UNAVAILABLE no longer counts
    # Window of 10: [5 x UNAVAILABLE, 5 x CANCELLED] is 50%.
    assert feed(cb, [StatusCode.CANCELLED] * 5) == [None] * 4 + [OPEN]


def window_counts(cb: CircuitBreaker, now: float) -> tuple[int, int, int]:
    snapshot = cb.snapshot(now)
    return snapshot.calls, snapshot.failed_calls, snapshot.slow_calls


def test_time_window_buckets_are_whole_seconds_as_in_resilience4j() -> None:
    cb = breaker(window_type="time", window_size=3, minimum_calls=100)  # never opens: only counts
    for now, status, duration in [(10.0, FAIL, 0.01), (10.999, OK, 0.01), (11.5, FAIL, 0.01), (12.999, OK, 2.0)]:
        assert cb.record(now, status, duration) is None
    assert window_counts(cb, 12.999) == (4, 2, 1)  # seconds 10, 11 and 12
    # At 13.0 second 10 leaves, both its calls at once, although the one at 10.999 is only 2.001 s old.
    assert window_counts(cb, 13.0) == (2, 1, 1)
    assert window_counts(cb, 13.999) == (2, 1, 1)
    assert window_counts(cb, 14.0) == (1, 0, 1)  # second 11 leaves
    assert window_counts(cb, 15.0) == (0, 0, 0)  # and second 12
    # A gap longer than the window: recording starts again from nothing.
    assert cb.record(100.25, FAIL, 0.01) is None
    assert window_counts(cb, 100.25) == (1, 1, 0)


def test_time_window_decides_on_whole_seconds() -> None:
    cb = breaker(window_type="time", window_size=3, minimum_calls=2, failure_rate_threshold=100.0)
    assert cb.record(0.9, FAIL, 0.01) is None
    # 3.0 is in second 3: second 0 has left the window, so this is one call of the two needed
    # (a window of exactly the last 3.0 s would still hold the call at 0.9).
    assert cb.record(3.0, FAIL, 0.01) is None
    assert cb.record(3.5, FAIL, 0.01) is OPEN
    cb = breaker(window_type="time", window_size=3, minimum_calls=2, failure_rate_threshold=100.0)
    assert cb.record(0.0, FAIL, 0.01) is None
    assert cb.record(2.999, FAIL, 0.01) is OPEN  # seconds 0 to 2: both in the window


def lines_run(work: Callable[[], object]) -> int:
    """How many lines of Python `work()` runs: a count of work done, not a timing."""
    count = 0

    def trace(frame: FrameType, event: str, arg: object) -> Callable[..., object]:
        nonlocal count
        if event == "line":
            count += 1
        return trace

    previous = sys.gettrace()
    sys.settrace(trace)
    try:
        work()
    finally:
        sys.settrace(previous)
    return count


@pytest.mark.parametrize("window_type", ["count", "time"])
def test_recording_costs_the_same_whatever_the_window_size(window_type: str) -> None:
    rate = 20  # calls a second; one in ten fails, so the breaker never opens

    def cost(window_size: int) -> int:
        cb = breaker(window_type=window_type, window_size=window_size, minimum_calls=1)
        calls = iter(range(1_000_000))

        def record(count: int) -> None:
            for _ in range(count):
                i = next(calls)
                cb.record(i / rate, FAIL if i % 10 == 9 else OK, 0.01)

        record(rate * 100 + 40)  # fills a window of 100 calls or 100 seconds
        cost = lines_run(lambda: record(rate * 10))  # ten more seconds: ten buckets leave a time window
        assert cb.state is CLOSED
        return cost

    small, large = cost(5), cost(100)
    assert large <= small * 1.1


class NaiveBreaker:
    """The breaker as resilience4j describes it, the slow way: every outcome kept, and the
    window and its rates counted again from scratch whenever they are needed."""

    def __init__(self, config: BreakerConfig) -> None:
        self.config = config
        self.state = CLOSED
        self.outcomes: list[tuple[int, bool, bool]] = []  # (epoch second, failed, slow)
        self.opened_at = 0.0
        self.permits = 0
        self.half_open: list[tuple[bool, bool]] = []

    def window(self, now: float) -> list[tuple[bool, bool]]:
        size = self.config.window_size
        if self.config.window_type == "count":
            return [(failed, slow) for _, failed, slow in self.outcomes[-size:]]
        return [(failed, slow) for second, failed, slow in self.outcomes if second > math.floor(now) - size]

    def try_acquire(self, now: float) -> tuple[bool, BreakerState | None]:
        moved = None
        if self.state is OPEN and now - self.opened_at >= self.config.wait_duration_in_open:
            moved = self.enter(HALF_OPEN, now)
        if self.state is CLOSED:
            return True, moved
        if self.state is HALF_OPEN and self.permits > 0:
            self.permits -= 1
            return True, moved
        return False, moved

    def record(self, now: float, status: StatusCode, duration: float) -> BreakerState | None:
        config = self.config
        outcome = (status in config.failure_status_codes, duration >= config.slow_call_duration)
        if self.state is HALF_OPEN:
            self.half_open.append(outcome)
            if len(self.half_open) < config.permitted_calls_in_half_open:
                return None
            return self.enter(OPEN if self.over(self.half_open) else CLOSED, now)
        if self.state is OPEN:
            return None
        self.outcomes.append((math.floor(now), *outcome))
        window = self.window(now)
        needed = config.minimum_calls if config.window_type == "time" else min(config.minimum_calls, config.window_size)
        if len(window) >= needed and self.over(window):
            return self.enter(OPEN, now)
        return None

    def over(self, outcomes: list[tuple[bool, bool]]) -> bool:
        failure_rate = 100.0 * sum(failed for failed, _ in outcomes) / len(outcomes)
        slow_rate = 100.0 * sum(slow for _, slow in outcomes) / len(outcomes)
        return failure_rate >= self.config.failure_rate_threshold or slow_rate >= self.config.slow_call_rate_threshold

    def enter(self, state: BreakerState, now: float) -> BreakerState:
        self.state = state
        self.outcomes = []
        self.half_open = []
        if state is OPEN:
            self.opened_at = now
        elif state is HALF_OPEN:
            self.permits = self.config.permitted_calls_in_half_open
        return state


breaker_configs = st.builds(
    BreakerConfig,
    window_type=st.sampled_from(["count", "time"]),
    window_size=st.integers(1, 6),
    minimum_calls=st.integers(1, 8),
    failure_rate_threshold=st.sampled_from([25.0, 50.0, 75.0, 100.0]),
    slow_call_rate_threshold=st.sampled_from([50.0, 100.0]),
    slow_call_duration=st.just(1.0),
    wait_duration_in_open=st.just(3.0),
    permitted_calls_in_half_open=st.integers(1, 3),
)
breaker_steps = st.lists(
    st.tuples(
        st.sampled_from([0.0, 0.0, 0.25, 0.5, 0.999, 1.0, 2.0, 7.0]),  # time since the step before
        st.booleans(),  # ask for a permit first
        st.sampled_from([OK, FAIL, StatusCode.CANCELLED]),
        st.sampled_from([0.1, 1.0]),  # duration: fast or slow
    ),
    max_size=120,
)


@given(breaker_configs, breaker_steps, st.floats(0.0, 1e6))
@settings(max_examples=300, deadline=None)
def test_breaker_agrees_with_a_naive_reference(
    config: BreakerConfig, steps: list[tuple[float, bool, StatusCode, float]], start: float
) -> None:
    cb, reference = CircuitBreaker(config), NaiveBreaker(config)
    now = start
    for elapsed, acquire, status, duration in steps:
        now += elapsed
        if acquire:
            assert cb.try_acquire(now) == reference.try_acquire(now)
        assert cb.record(now, status, duration) == reference.record(now, status, duration)
        assert cb.state is reference.state
        window = reference.window(now)
        expected = (len(window), sum(failed for failed, _ in window), sum(slow for _, slow in window))
        assert window_counts(cb, now) == expected


# --------------------------------------------------------------------------- outlier detection


def names(count: int) -> list[str]:
    return [f"api/{i}" for i in range(count)]


def detector(count: int, seed: int = 0, **overrides: object) -> OutlierDetector:
    options: dict[str, object] = {
        "interval": 10.0,
        "base_ejection_time": 30.0,
        "max_ejection_time": 300.0,
        "max_ejection_percent": 100.0,
    }
    options.update(overrides)
    return OutlierDetector(OutlierConfig(**options), names(count), random.Random(seed))  # type: ignore[arg-type]


def consecutive(threshold: int = 3, **overrides: object) -> ConsecutiveFailuresConfig:
    return ConsecutiveFailuresConfig(threshold=threshold, **overrides)  # type: ignore[arg-type]


def record_many(od: OutlierDetector, endpoint: str, ok: int, failed: int, now: float = 0.0) -> list[Ejection]:
    ejections = [od.record(endpoint, OK, now) for _ in range(ok)]
    ejections += [od.record(endpoint, FAIL, now) for _ in range(failed)]
    return [e for e in ejections if e is not None]


def test_outlier_config_defaults() -> None:
    config = OutlierConfig()
    assert (config.interval, config.base_ejection_time, config.max_ejection_time) == (10.0, 30.0, 300.0)
    assert config.max_ejection_percent == 10.0
    assert config.consecutive_failures is None
    assert config.success_rate is None
    assert config.failure_percentage is None
    assert ConsecutiveFailuresConfig().threshold == 5
    assert (SuccessRateConfig().stdev_factor, SuccessRateConfig().minimum_hosts) == (1900, 5)
    assert SuccessRateConfig().request_volume == 100
    assert (FailurePercentageConfig().threshold, FailurePercentageConfig().request_volume) == (85.0, 50)


def test_consecutive_failures_eject_at_exactly_the_threshold() -> None:
    od = detector(3, consecutive_failures=consecutive(threshold=3))
    assert od.record("api/0", FAIL, 1.0) is None
    assert od.record("api/0", FAIL, 1.0) is None
    assert not od.is_ejected("api/0")
    assert od.record("api/0", FAIL, 1.5) == Ejection("api/0", "consecutive_failures", 30.0)
    assert od.is_ejected("api/0")
    assert od.ejected == ["api/0"]


def test_an_ok_resets_the_consecutive_count() -> None:
    od = detector(3, consecutive_failures=consecutive(threshold=3))
    for _ in range(5):
        assert od.record("api/0", FAIL, 0.0) is None
        assert od.record("api/0", FAIL, 0.0) is None
        assert od.record("api/0", OK, 0.0) is None
    assert od.ejected == []
    assert od.record("api/0", FAIL, 0.0) is None
    assert od.record("api/0", FAIL, 0.0) is None
    assert od.record("api/0", FAIL, 0.0) is not None


def test_consecutive_failures_are_counted_per_endpoint() -> None:
    od = detector(3, consecutive_failures=consecutive(threshold=3))
    for _ in range(2):
        for name in names(3):
            assert od.record(name, FAIL, 0.0) is None
    assert od.ejected == []


def test_statuses_outside_the_consecutive_set_do_not_count() -> None:
    od = detector(3, consecutive_failures=consecutive(threshold=3, status_codes=frozenset({StatusCode.INTERNAL})))
    for _ in range(10):
        assert od.record("api/0", StatusCode.UNAVAILABLE, 0.0) is None
        assert od.record("api/0", StatusCode.CANCELLED, 0.0) is None
    assert od.ejected == []
    assert od.record("api/0", StatusCode.INTERNAL, 0.0) is None
    assert od.record("api/0", StatusCode.INTERNAL, 0.0) is None
    assert od.record("api/0", StatusCode.INTERNAL, 0.0) is not None


def test_a_returning_endpoint_needs_a_full_run_of_failures_to_be_ejected_again() -> None:
    # Calls already in flight to an ejected endpoint still end and are recorded. Envoy resets the
    # consecutive counters when a host returns ("to avoid re-ejection on very few new errors",
    # DetectorImpl::checkHostForUneject), so failures from the ejected period must not carry over.
    od = detector(3, consecutive_failures=consecutive(threshold=3))
    for _ in range(3):
        od.record("api/0", FAIL, 0.0)
    assert od.is_ejected("api/0")
    for _ in range(5):
        assert od.record("api/0", FAIL, 1.0) is None  # in-flight calls failing while ejected
    assert od.sweep(30.0) == ([], ["api/0"])
    assert od.record("api/0", FAIL, 31.0) is None
    assert od.record("api/0", FAIL, 31.0) is None
    assert not od.is_ejected("api/0")
    assert od.record("api/0", FAIL, 31.0) is not None  # the third new failure


def test_cancelled_does_not_count_by_default() -> None:
    od = detector(3, consecutive_failures=consecutive(threshold=3))
    for _ in range(10):
        assert od.record("api/0", StatusCode.CANCELLED, 0.0) is None
    assert od.ejected == []


def success_rate_detector(count: int, **overrides: object) -> OutlierDetector:
    options: dict[str, object] = {"stdev_factor": 1900, "minimum_hosts": 5, "request_volume": 10}
    options.update(overrides)
    return detector(count, success_rate=SuccessRateConfig(**options))  # type: ignore[arg-type]


def test_success_rate_ejects_the_endpoint_below_mean_minus_factor_stdev() -> None:
    od = success_rate_detector(5)
    for name in names(4):
        record_many(od, name, ok=10, failed=0)
    record_many(od, "api/4", ok=5, failed=5)
    # Rates 1,1,1,1,0.5: mean 0.9, stdev 0.2, floor 0.9 - 0.2 * 1.9 = 0.52 > 0.5.
    ejections, returned = od.sweep(10.0)
    assert ejections == [Ejection("api/4", "success_rate", 30.0)]
    assert returned == []
    assert od.ejected == ["api/4"]


def test_success_rate_floor_is_exact() -> None:
    # A lone outlier among five sits exactly 2 standard deviations below the mean,
    # so a factor of 1.999 ejects it and 2.0 (not strictly below) does not.
    # Rates are powers-of-two fractions so that mean and stdev are exact.
    for factor, ejected in ((1999, ["api/4"]), (2000, []), (2100, [])):
        od = success_rate_detector(5, stdev_factor=factor, request_volume=8)
        for name in names(4):
            record_many(od, name, ok=8, failed=0)
        record_many(od, "api/4", ok=4, failed=4)
        od.sweep(10.0)
        assert od.ejected == ejected, factor


def test_success_rate_needs_minimum_hosts_with_request_volume() -> None:
    od = success_rate_detector(5)
    for name in names(4):
        record_many(od, name, ok=10, failed=0)
    record_many(od, "api/4", ok=0, failed=9)  # one call short of request_volume: 4 candidates < 5
    assert od.sweep(10.0) == ([], [])
    # Six endpoints, five with enough calls: now there are enough candidates.
    od = success_rate_detector(6)
    for name in names(4):
        record_many(od, name, ok=10, failed=0)
    record_many(od, "api/4", ok=0, failed=10)
    record_many(od, "api/5", ok=0, failed=9)  # not a candidate, so not ejected however bad
    ejections, _ = od.sweep(10.0)
    assert [e.endpoint for e in ejections] == ["api/4"]


def test_success_rate_with_equal_rates_ejects_nobody() -> None:
    od = success_rate_detector(5)
    for name in names(5):
        record_many(od, name, ok=5, failed=5)
    assert od.sweep(10.0) == ([], [])


def failure_percentage_detector(count: int, **overrides: object) -> OutlierDetector:
    options: dict[str, object] = {"threshold": 50.0, "minimum_hosts": 5, "request_volume": 10}
    options.update(overrides)
    return detector(count, failure_percentage=FailurePercentageConfig(**options))  # type: ignore[arg-type]


def test_failure_percentage_ejects_above_its_threshold() -> None:
    od = failure_percentage_detector(5)
    record_many(od, "api/0", ok=4, failed=6)  # 60% > 50%
    record_many(od, "api/1", ok=5, failed=5)  # 50%: not above
    for name in names(5)[2:]:
        record_many(od, name, ok=10, failed=0)
    ejections, _ = od.sweep(10.0)
    assert ejections == [Ejection("api/0", "failure_percentage", 30.0)]
    assert od.ejected == ["api/0"]


def test_failure_percentage_needs_minimum_hosts_with_request_volume() -> None:
    od = failure_percentage_detector(5)
    record_many(od, "api/0", ok=0, failed=10)
    for name in names(5)[1:4]:
        record_many(od, name, ok=10, failed=0)
    record_many(od, "api/4", ok=9, failed=0)  # 4 candidates < 5
    assert od.sweep(10.0) == ([], [])
    od = failure_percentage_detector(5, minimum_hosts=4)
    record_many(od, "api/0", ok=0, failed=10)
    for name in names(5)[1:4]:
        record_many(od, name, ok=10, failed=0)
    record_many(od, "api/4", ok=0, failed=9)  # below request_volume: never a candidate
    ejections, _ = od.sweep(10.0)
    assert [e.endpoint for e in ejections] == ["api/0"]


def test_non_failure_statuses_are_neither_successes_nor_failures() -> None:
    od = failure_percentage_detector(5)
    record_many(od, "api/0", ok=4, failed=6)
    for _ in range(100):
        od.record("api/0", StatusCode.NOT_FOUND, 0.0)  # would dilute 60% if counted as success
    for name in names(5)[1:]:
        record_many(od, name, ok=10, failed=0)
    ejections, _ = od.sweep(10.0)
    assert [e.endpoint for e in ejections] == ["api/0"]


def test_counters_reset_at_each_sweep() -> None:
    od = failure_percentage_detector(5)
    for sweep in range(1, 4):
        record_many(od, "api/0", ok=0, failed=5)  # 5 per interval, request_volume is 10
        for name in names(5)[1:]:
            record_many(od, name, ok=10, failed=0)
        assert od.sweep(10.0 * sweep) == ([], [])
    assert od.ejected == []


def test_ejection_time_grows_with_the_multiplier_and_is_capped() -> None:
    od = detector(3, base_ejection_time=30.0, max_ejection_time=100.0, consecutive_failures=consecutive(threshold=1))
    durations = []
    now = 0.0
    for _ in range(5):
        ejection = od.record("api/0", FAIL, now)
        assert ejection is not None
        durations.append(ejection.duration)
        # Sweep every 10 s until it is back.
        while True:
            now += 10.0
            _, returned = od.sweep(now)
            if returned:
                assert returned == ["api/0"]
                break
    # 30, 60, 90, then capped at max(30, 100) = 100.
    assert durations == [30.0, 60.0, 90.0, 100.0, 100.0]


def test_ejection_cap_is_at_least_base_ejection_time() -> None:
    od = detector(3, base_ejection_time=30.0, max_ejection_time=10.0, consecutive_failures=consecutive(threshold=1))
    durations = []
    for now in (0.0, 30.0, 60.0, 90.0):
        ejection = od.record("api/0", FAIL, now)
        assert ejection is not None
        durations.append(ejection.duration)
        assert od.sweep(now + 30.0)[1] == ["api/0"]
    assert durations == [30.0] * 4


def test_an_endpoint_returns_at_the_first_sweep_at_or_after_its_ejection_time() -> None:
    od = detector(3, base_ejection_time=30.0, consecutive_failures=consecutive(threshold=1))
    assert od.record("api/1", FAIL, 5.0) is not None  # back at 35.0
    for now in (10.0, 20.0, 30.0, 34.999):
        assert od.sweep(now) == ([], [])
        assert od.is_ejected("api/1")
    assert od.sweep(35.0) == ([], ["api/1"])
    assert not od.is_ejected("api/1")
    assert od.ejected == []
    # A late sweep returns it too.
    assert od.record("api/1", FAIL, 40.0) is not None  # multiplier 2: back at 100.0
    assert od.sweep(99.0) == ([], [])
    assert od.sweep(170.0) == ([], ["api/1"])


def test_multiplier_decays_by_one_per_sweep_in_rotation() -> None:
    od = detector(3, base_ejection_time=30.0, consecutive_failures=consecutive(threshold=1))
    od.record("api/0", FAIL, 0.0)  # multiplier 1, 30 s
    assert od.sweep(30.0)[1] == ["api/0"]  # no decay in the sweep that returns it
    first = od.record("api/0", FAIL, 30.0)  # multiplier 2, 60 s
    assert first is not None
    assert first.duration == 60.0
    assert od.sweep(90.0)[1] == ["api/0"]
    od.sweep(100.0)  # multiplier 2 -> 1
    again = od.record("api/0", FAIL, 100.0)  # 1 -> 2
    assert again is not None
    assert again.duration == 60.0
    assert od.sweep(160.0)[1] == ["api/0"]
    for now in (170.0, 180.0, 190.0):  # 2 -> 1 -> 0 -> 0 (never negative)
        od.sweep(now)
    last = od.record("api/0", FAIL, 190.0)
    assert last is not None
    assert last.duration == 30.0


def test_multiplier_does_not_decay_while_ejected() -> None:
    od = detector(3, base_ejection_time=30.0, consecutive_failures=consecutive(threshold=1))
    od.record("api/0", FAIL, 0.0)
    assert od.sweep(30.0)[1] == ["api/0"]
    od.record("api/0", FAIL, 30.0)  # multiplier 2: 60 s even with many sweeps in between
    for now in range(40, 90, 10):
        assert od.sweep(float(now)) == ([], [])
    assert od.sweep(90.0)[1] == ["api/0"]


def test_max_ejection_percent_is_checked_after_the_prospective_ejection() -> None:
    # 10 endpoints at 20%: a second ejection makes 20% (allowed), a third would make 30%.
    od = detector(10, max_ejection_percent=20.0, consecutive_failures=consecutive(threshold=1))
    ejections = [od.record(name, FAIL, 0.0) for name in names(10)]
    assert [e.endpoint for e in ejections if e is not None] == ["api/0", "api/1"]
    assert od.ejected == ["api/0", "api/1"]
    # At 25%, A50's check-before rule would let a third in (2 of 10 = 20% < 25%); after-the-fact it may not.
    od = detector(10, max_ejection_percent=25.0, consecutive_failures=consecutive(threshold=1))
    for name in names(10):
        od.record(name, FAIL, 0.0)
    assert len(od.ejected) == 2  # 3/10 = 30% > 25%


def test_max_ejection_percent_applies_to_rate_detectors() -> None:
    od = detector(
        10,
        max_ejection_percent=20.0,
        failure_percentage=FailurePercentageConfig(threshold=50.0, minimum_hosts=5, request_volume=10),
    )
    for name in names(10)[:5]:
        record_many(od, name, ok=0, failed=10)
    for name in names(10)[5:]:
        record_many(od, name, ok=10, failed=0)
    ejections, _ = od.sweep(10.0)
    assert len(ejections) == 2
    assert len(od.ejected) == 2


def test_one_ejection_is_always_allowed_when_none_is_ejected() -> None:
    # 10% of 3 endpoints is 0.3 of an endpoint; one may still be ejected, but only one.
    od = detector(3, max_ejection_percent=10.0, consecutive_failures=consecutive(threshold=1))
    ejections = [od.record(name, FAIL, 0.0) for name in names(3)]
    assert [e.endpoint for e in ejections if e is not None] == ["api/0"]
    assert od.ejected == ["api/0"]
    # Once it is back, another may go.
    assert od.sweep(30.0)[1] == ["api/0"]
    assert od.record("api/2", FAIL, 30.0) is not None


def test_a_single_endpoint_service_never_ejects() -> None:
    od = detector(
        1,
        max_ejection_percent=100.0,
        consecutive_failures=consecutive(threshold=1),
        failure_percentage=FailurePercentageConfig(threshold=0.0, minimum_hosts=1, request_volume=1),
        success_rate=SuccessRateConfig(minimum_hosts=1, request_volume=1),
    )
    for sweep in range(1, 6):
        for _ in range(10):
            assert od.record("api/0", FAIL, float(sweep)) is None
        assert od.sweep(10.0 * sweep) == ([], [])
    assert od.ejected == []


@pytest.mark.parametrize("count", [2, 3, 5])
def test_with_all_endpoints_failing_at_least_one_stays_in(count: int) -> None:
    od = detector(
        count,
        max_ejection_percent=100.0,
        consecutive_failures=consecutive(threshold=1),
        failure_percentage=FailurePercentageConfig(threshold=0.0, minimum_hosts=1, request_volume=1),
    )
    for sweep in range(1, 20):
        for name in names(count):
            od.record(name, FAIL, 10.0 * sweep)
        assert len(od.ejected) == count - 1
        od.sweep(10.0 * sweep)  # some may come back, all at once at most
        assert len(od.ejected) < count


def test_enforcement_percentage_zero_never_ejects() -> None:
    od = detector(
        5,
        consecutive_failures=consecutive(threshold=1, enforcement_percentage=0.0),
        success_rate=SuccessRateConfig(enforcement_percentage=0.0, minimum_hosts=5, request_volume=10),
        failure_percentage=FailurePercentageConfig(
            threshold=10.0, enforcement_percentage=0.0, minimum_hosts=5, request_volume=10
        ),
    )
    for sweep in range(1, 5):
        for name in names(4):
            record_many(od, name, ok=10, failed=0)
        assert record_many(od, "api/4", ok=0, failed=10) == []
        assert od.sweep(10.0 * sweep) == ([], [])
    assert od.ejected == []


def test_enforcement_percentage_ejects_some_of_the_time() -> None:
    ejected = 0
    for seed in range(200):
        od = detector(3, seed=seed, consecutive_failures=consecutive(threshold=1, enforcement_percentage=50.0))
        ejected += od.record("api/0", FAIL, 0.0) is not None
    assert 60 < ejected < 140


# --------------------------------------------------------------------------- retry policy and hedging


def test_backoff_without_jitter_is_exactly_the_capped_exponential() -> None:
    policy = RetryPolicy(initial_backoff=0.1, max_backoff=1.0, backoff_multiplier=2.0, jitter=0.0)
    rng = random.Random(1)
    assert [policy.backoff(n, rng) for n in range(1, 7)] == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    policy = RetryPolicy(initial_backoff=0.05, max_backoff=2.0, backoff_multiplier=3.0, jitter=0.0)
    for n in range(1, 8):
        assert policy.backoff(n, rng) == min(0.05 * 3.0 ** (n - 1), 2.0)


class FixedRandom(random.Random):
    def __init__(self, value: float) -> None:
        super().__init__(0)
        self.value = value

    def random(self) -> float:
        return self.value


def test_backoff_with_full_jitter_lies_in_zero_to_ceiling() -> None:
    policy = RetryPolicy(initial_backoff=0.1, max_backoff=1.0, backoff_multiplier=2.0, jitter=1.0)
    rng = random.Random(7)
    for n in range(1, 8):
        ceiling = min(0.1 * 2.0 ** (n - 1), 1.0)
        waits = [policy.backoff(n, rng) for _ in range(500)]
        assert all(0.0 < w <= ceiling for w in waits)
        assert min(waits) < ceiling * 0.1
        assert max(waits) > ceiling * 0.9
    # U = 0 gives the ceiling itself; U just below 1 gives a wait just above zero.
    assert policy.backoff(3, FixedRandom(0.0)) == 0.4
    assert 0.0 < policy.backoff(3, FixedRandom(math.nextafter(1.0, 0.0))) < 1e-9


def test_backoff_with_partial_jitter() -> None:
    policy = RetryPolicy(initial_backoff=1.0, max_backoff=10.0, backoff_multiplier=2.0, jitter=0.25)
    assert policy.backoff(2, FixedRandom(0.5)) == 2.0 * (1.0 - 0.25 * 0.5)
    rng = random.Random(3)
    assert all(1.5 < policy.backoff(2, rng) <= 2.0 for _ in range(200))


@pytest.mark.parametrize("multiplier", [2.0, 1e200, 1e308, math.inf])
def test_backoff_with_a_huge_multiplier_or_step_stops_at_max_backoff(multiplier: float) -> None:
    policy = RetryPolicy(initial_backoff=0.01, max_backoff=0.05, backoff_multiplier=multiplier, jitter=0.0)
    rng = random.Random(1)
    assert policy.backoff(1, rng) == 0.01
    for step in (4, 5, 100, 10_000, 10**9):
        assert policy.backoff(step, rng) == 0.05
    jittered = attrs.evolve(policy, jitter=1.0)
    assert all(0.0 < jittered.backoff(step, rng) <= 0.05 for step in (2, 3, 10**9) for _ in range(50))


@given(
    st.floats(1e-6, 10.0),
    st.floats(1.0, 1e6),
    st.floats(min_value=0.0, exclude_min=True, allow_nan=False),
    st.integers(1, 10**6),
)
@settings(max_examples=300, deadline=None)
def test_backoff_is_always_a_finite_wait_within_max_backoff(
    initial: float, spread: float, multiplier: float, step: int
) -> None:
    policy = RetryPolicy(
        initial_backoff=initial, max_backoff=initial * spread, backoff_multiplier=multiplier, jitter=0.0
    )
    rng = random.Random(0)
    wait = policy.backoff(step, rng)
    assert 0.0 <= wait <= policy.max_backoff
    if multiplier >= 1.0:
        assert policy.backoff(step, rng) <= policy.backoff(step + 1, rng)  # it grows, up to the cap
        assert wait >= initial


@pytest.mark.parametrize(("configured", "effective"), [(1, 1), (2, 2), (3, 3), (5, 5), (6, 5), (100, 5)])
def test_attempts_are_capped_at_five(configured: int, effective: int) -> None:
    assert MAX_ATTEMPTS_CAP == 5
    assert RetryPolicy(max_attempts=configured).attempts == effective
    assert HedgingPolicy(max_attempts=configured).attempts == effective


def test_policy_defaults() -> None:
    assert RetryPolicy().attempts == 3
    assert RetryPolicy().retryable_status_codes == frozenset({StatusCode.UNAVAILABLE})
    assert HedgingPolicy().attempts == 2
    assert HedgingPolicy().non_fatal_status_codes == frozenset()


# --------------------------------------------------------------------------- retry throttle


def test_throttle_starts_full_and_allows() -> None:
    throttle = RetryThrottle(ThrottleConfig(max_tokens=10.0, token_ratio=0.5))
    assert throttle.tokens == 10.0
    assert throttle.allows_retry()
    assert RetryThrottle(ThrottleConfig()).tokens == 100.0


def test_throttle_failures_cost_one_and_successes_add_the_ratio() -> None:
    throttle = RetryThrottle(ThrottleConfig(max_tokens=10.0, token_ratio=0.5))
    throttle.record_failure()
    assert throttle.tokens == 9.0
    throttle.record_success()
    assert throttle.tokens == 9.5
    throttle.record_success()
    throttle.record_success()
    assert throttle.tokens == 10.0  # capped at max_tokens


def test_throttle_allows_only_above_half_exactly() -> None:
    throttle = RetryThrottle(ThrottleConfig(max_tokens=10.0, token_ratio=0.5))
    for _ in range(4):
        throttle.record_failure()
    assert throttle.tokens == 6.0
    assert throttle.allows_retry()
    throttle.record_failure()
    assert throttle.tokens == 5.0  # exactly max_tokens / 2: not allowed
    assert not throttle.allows_retry()
    throttle.record_success()
    assert throttle.tokens == 5.5
    assert throttle.allows_retry()
    throttle.record_failure()
    assert throttle.tokens == 4.5
    assert not throttle.allows_retry()


def test_throttle_never_goes_below_zero() -> None:
    throttle = RetryThrottle(ThrottleConfig(max_tokens=10.0, token_ratio=0.25))
    for _ in range(50):
        throttle.record_failure()
    assert throttle.tokens == 0.0
    throttle.record_success()
    assert throttle.tokens == 0.25
    assert not throttle.allows_retry()
    # It takes (5 - 0.25) / 0.25 + 1 = 20 successes to get back above half.
    for _ in range(19):
        throttle.record_success()
    assert throttle.tokens == 5.0
    assert not throttle.allows_retry()
    throttle.record_success()
    assert throttle.allows_retry()


@given(st.lists(st.booleans(), max_size=300))
@settings(max_examples=50, deadline=None)
def test_throttle_tokens_stay_within_bounds(outcomes: list[bool]) -> None:
    config = ThrottleConfig(max_tokens=10.0, token_ratio=0.1)
    throttle = RetryThrottle(config)
    for success in outcomes:
        if success:
            throttle.record_success()
        else:
            throttle.record_failure()
        assert 0.0 <= throttle.tokens <= config.max_tokens
        assert throttle.allows_retry() == (throttle.tokens > config.max_tokens / 2)


# --------------------------------------------------------------------------- retry budget


@pytest.mark.parametrize(
    ("active_calls", "allowed_retries"),
    [
        (0, 3),  # the floor: min_retry_concurrency
        (10, 3),  # 20% of 10 = 2 < 3
        (15, 3),  # 3.0
        (16, 4),  # 3.2: a fourth retry fits (3 < 3.2)
        (20, 4),  # 4.0: exactly four
        (21, 5),  # 4.2
        (25, 5),
        (100, 20),
    ],
)
def test_budget_boundaries(active_calls: int, allowed_retries: int) -> None:
    budget = RetryBudget(BudgetConfig(budget_percent=20.0, min_retry_concurrency=3))
    for retries in range(allowed_retries):
        budget.active_retries = retries
        assert budget.allows_retry(active_calls), retries
    budget.active_retries = allowed_retries
    assert not budget.allows_retry(active_calls)


def test_budget_with_no_floor_and_no_percent_never_allows() -> None:
    budget = RetryBudget(BudgetConfig(budget_percent=0.0, min_retry_concurrency=0))
    assert not budget.allows_retry(1000)
    budget = RetryBudget(BudgetConfig(budget_percent=50.0, min_retry_concurrency=0))
    assert not budget.allows_retry(0)
    assert budget.allows_retry(1)  # 0 < 0.5
    budget.active_retries = 1
    assert not budget.allows_retry(2)  # 1 < 1.0 is false


def test_budget_defaults() -> None:
    budget = RetryBudget(BudgetConfig())
    assert budget.active_retries == 0
    assert (budget.config.budget_percent, budget.config.min_retry_concurrency) == (20.0, 3)


# --------------------------------------------------------------------------- Peak-EWMA


def test_peak_ewma_starts_at_default_rtt() -> None:
    ewma = PeakEwma(PeakEwmaConfig(decay=10.0, default_rtt=0.030), now=5.0)
    assert ewma.estimate(5.0) == 0.030
    assert ewma.estimate(4.0) == 0.030  # no time has passed (or it went backwards)
    assert PeakEwma(PeakEwmaConfig(), now=0.0).estimate(0.0) == 0.030


def test_peak_ewma_jumps_straight_up_to_a_larger_sample() -> None:
    ewma = PeakEwma(PeakEwmaConfig(decay=10.0, default_rtt=0.030), now=0.0)
    ewma.observe(0.5, 1.0)
    assert ewma.estimate(1.0) == 0.5
    ewma.observe(2.0, 1.0)
    assert ewma.estimate(1.0) == 2.0


def test_peak_ewma_blends_toward_a_smaller_sample() -> None:
    ewma = PeakEwma(PeakEwmaConfig(decay=10.0, default_rtt=1.0), now=0.0)
    ewma.observe(0.2, 5.0)
    weight = math.exp(-5.0 / 10.0)
    assert ewma.estimate(5.0) == pytest.approx(1.0 * weight + 0.2 * (1.0 - weight), rel=1e-12)
    assert 0.2 < ewma.estimate(5.0) < 1.0
    # A sample at the same instant has weight 1 on the old estimate: nothing changes.
    before = ewma.estimate(5.0)
    ewma.observe(0.0, 5.0)
    assert ewma.estimate(5.0) == pytest.approx(before, rel=1e-12)
    # Many samples of the same value converge on it.
    for i in range(1, 200):
        ewma.observe(0.2, 5.0 + i)
    assert ewma.estimate(204.0) == pytest.approx(0.2, rel=1e-6)


def test_peak_ewma_decays_toward_zero_while_idle() -> None:
    ewma = PeakEwma(PeakEwmaConfig(decay=10.0, default_rtt=0.030), now=0.0)
    ewma.observe(0.1, 0.0)
    estimates = [ewma.estimate(t) for t in (0.0, 1.0, 10.0, 100.0, 1000.0)]
    assert estimates == sorted(estimates, reverse=True)
    assert len(set(estimates)) == len(estimates)
    assert estimates[2] == pytest.approx(0.1 * math.exp(-1.0), rel=1e-12)
    assert estimates[-1] < 1e-40


def latency_endpoint(index: int, rtt: float, in_flight: int = 0) -> Endpoint:
    ewma = PeakEwma(PeakEwmaConfig(decay=10.0, default_rtt=rtt), now=0.0)
    return Endpoint(f"api/{index}", index=index, in_flight=in_flight, latency=ewma)


def peak_ewma_picks(endpoints: list[Endpoint], picks: int, seed: int = 0, now: float = 0.0) -> list[int]:
    picker = build_picker(BalancerConfig(policy="peak_ewma"), endpoints, random.Random(seed), now=lambda: now)
    assert isinstance(picker, PeakEwmaPicker)
    chosen = []
    for _ in range(picks):
        endpoint = picker.pick(None)
        assert endpoint is not None
        chosen.append(endpoint.index)
    return chosen


def test_peak_ewma_picker_with_two_endpoints_always_picks_the_cheaper() -> None:
    fast, slow = latency_endpoint(0, 0.010), latency_endpoint(1, 0.050)
    for seed in range(5):
        assert set(peak_ewma_picks([fast, slow], 50, seed)) == {0}
        assert set(peak_ewma_picks([slow, fast], 50, seed)) == {0}


def test_peak_ewma_picker_cost_counts_calls_in_flight() -> None:
    # 0.010 * (4 + 1) = 0.050 > 0.030 * (0 + 1): the slower but idle endpoint is cheaper.
    busy_fast, idle_slow = latency_endpoint(0, 0.010, in_flight=4), latency_endpoint(1, 0.030)
    assert set(peak_ewma_picks([busy_fast, idle_slow], 50)) == {1}
    # 0.010 * 2 = 0.020 < 0.030: now the fast one wins.
    busy_fast.in_flight = 1
    assert set(peak_ewma_picks([busy_fast, idle_slow], 50)) == {0}


def test_peak_ewma_picker_reads_the_estimate_at_the_current_time() -> None:
    # b observed a slow sample long ago, a a moderate one just now: at now=100, b has decayed.
    a, b = latency_endpoint(0, 0.001), latency_endpoint(1, 0.001)
    assert a.latency is not None
    assert b.latency is not None
    b.latency.observe(1.0, 0.0)
    a.latency.observe(0.1, 100.0)
    assert set(peak_ewma_picks([a, b], 20, now=0.0)) == {0}
    assert set(peak_ewma_picks([a, b], 20, now=100.0)) == {1}  # 1.0 * e^-10 < 0.1


def test_peak_ewma_picker_single_endpoint_is_always_picked() -> None:
    only = latency_endpoint(0, 5.0, in_flight=100)
    assert peak_ewma_picks([only], 20) == [0] * 20


def test_peak_ewma_picker_spreads_among_many_by_cost() -> None:
    endpoints = [latency_endpoint(i, 0.010 * (i + 1)) for i in range(5)]
    picks = peak_ewma_picks(endpoints, 2000, seed=11)
    counts = [picks.count(i) for i in range(5)]
    # The slowest is never the cheaper of two; the fastest always is.
    assert counts[4] == 0
    assert counts == sorted(counts, reverse=True)
    assert counts[0] > 700  # it wins every pair it is in: 2/5 of the picks


def test_peak_ewma_needs_a_clock() -> None:
    picker = build_picker(
        BalancerConfig(policy="peak_ewma"), [latency_endpoint(0, 0.01), latency_endpoint(1, 0.02)], random.Random(0)
    )
    with pytest.raises(RuntimeError, match="clock"):
        picker.pick(None)


# --------------------------------------------------------------------------- properties


breaker_ops = st.lists(
    st.tuples(
        st.sampled_from(["acquire", "record", "wait"]),
        st.sampled_from([OK, FAIL, StatusCode.CANCELLED, StatusCode.DEADLINE_EXCEEDED]),
        st.sampled_from([0.0, 0.5, 2.0]),  # a duration, or a wait
        st.integers(0, 1000),  # which outstanding call ends
    ),
    max_size=200,
)


@given(
    ops=breaker_ops,
    permitted=st.integers(1, 5),
    window_type=st.sampled_from(["count", "time"]),
    window_size=st.integers(1, 8),
    minimum_calls=st.integers(1, 8),
)
@settings(max_examples=150, deadline=None)
def test_half_open_never_lets_more_than_the_permitted_calls_through(
    ops: list[tuple[str, StatusCode, float, int]],
    permitted: int,
    window_type: str,
    window_size: int,
    minimum_calls: int,
) -> None:
    cb = breaker(
        window_type=window_type,
        window_size=window_size,
        minimum_calls=minimum_calls,
        permitted_calls_in_half_open=permitted,
        slow_call_rate_threshold=60.0,
        wait_duration_in_open=1.0,
    )
    now = 0.0
    outstanding: list[float] = []  # start times of calls let through and not yet ended
    admitted_this_half_open = 0
    for kind, status, amount, which in ops:
        if kind == "wait":
            now += amount
        elif kind == "acquire":
            state_before = cb.state
            allowed, moved = cb.try_acquire(now)
            if moved is not None:
                assert moved is HALF_OPEN
                assert state_before is OPEN
                admitted_this_half_open = 0
            if cb.state is CLOSED:
                assert allowed
            if cb.state is OPEN:
                assert not allowed
            if allowed:
                outstanding.append(now)
                if cb.state is HALF_OPEN:
                    admitted_this_half_open += 1
                    assert admitted_this_half_open <= permitted
        elif outstanding:
            outstanding.pop(which % len(outstanding))
            moved = cb.record(now, status, amount)
            if moved is not None:
                assert moved is cb.state
                assert moved in (OPEN, CLOSED)
        assert admitted_this_half_open <= permitted


outlier_ops = st.lists(
    st.tuples(
        st.sampled_from(["record", "record", "record", "sweep"]),
        st.integers(0, 99),  # which endpoint
        st.sampled_from([OK, FAIL, FAIL, StatusCode.INTERNAL, StatusCode.CANCELLED]),
    ),
    max_size=300,
)


@given(
    ops=outlier_ops,
    count=st.integers(1, 12),
    max_ejection_percent=st.integers(0, 100),
    threshold=st.integers(1, 3),
    seed=st.integers(0, 1000),
    enforcement=st.sampled_from([0.0, 50.0, 100.0]),
)
@settings(max_examples=150, deadline=None)
def test_outlier_detector_respects_the_ejection_caps(
    ops: list[tuple[str, int, StatusCode]],
    count: int,
    max_ejection_percent: int,
    threshold: int,
    seed: int,
    enforcement: float,
) -> None:
    od = detector(
        count,
        seed=seed,
        base_ejection_time=10.0,
        max_ejection_time=40.0,
        max_ejection_percent=float(max_ejection_percent),
        consecutive_failures=ConsecutiveFailuresConfig(threshold=threshold, enforcement_percentage=enforcement),
        success_rate=SuccessRateConfig(stdev_factor=500, minimum_hosts=2, request_volume=2),
        failure_percentage=FailurePercentageConfig(threshold=30.0, minimum_hosts=1, request_volume=1),
    )
    cap = max(1, math.floor(max_ejection_percent * count / 100))
    endpoints = names(count)
    now = 0.0
    for kind, which, status in ops:
        name = endpoints[which % count]
        if kind == "record":
            ejection = od.record(name, status, now)
            if ejection is not None:
                assert ejection.endpoint == name
                assert 10.0 <= ejection.duration <= 40.0
        else:
            now += 5.0
            ejections, returned = od.sweep(now)
            assert not {e.endpoint for e in ejections} & set(returned)
        ejected = od.ejected
        assert len(ejected) < count  # the last endpoint in rotation stays
        assert len(ejected) <= cap
        assert len(set(ejected)) == len(ejected)
