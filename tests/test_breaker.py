"""Circuit breakers as resilience4j has them: count and time windows, OPEN, HALF_OPEN, what counts.

Time is passed in as a number, so these tests drive the breaker by hand.
"""

from __future__ import annotations

import pytest

from meshsim.core.breaker import BreakerConfig, CircuitBreaker, ConcurrencyLimit
from meshsim.core.status import SERVER_FAILURES, StatusCode
from tests.resilience import CLOSED, FAIL, HALF_OPEN, OK, OPEN, breaker, window_counts


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
