"""A breaker's permit belongs to the period that issued it.

A call let through while the breaker was CLOSED that ends after it has opened and
half-opened must not decide the half-open trial, and a cancelled one must not give
back a half-open permit it never held; a cancelled call is no outcome for a service
breaker either.
"""

from __future__ import annotations

from meshsim.core.breaker import BreakerConfig, BreakerState, CircuitBreaker
from meshsim.core.status import StatusCode

FAIL, OK = StatusCode.UNAVAILABLE, StatusCode.OK


def opened_then_half_open(permitted: int = 1) -> tuple[CircuitBreaker, int]:
    """A breaker that let a call through while CLOSED (its permit returned), then opened on other
    calls' failures and half-opened at 10 s."""
    breaker = CircuitBreaker(
        BreakerConfig(window_size=2, minimum_calls=2, wait_duration_in_open=5.0, permitted_calls_in_half_open=permitted)
    )
    assert breaker.try_acquire(0.0) == (True, None)
    early = breaker.generation
    breaker.record(1.0, FAIL, 0.1, breaker.generation)
    assert breaker.record(2.0, FAIL, 0.1, breaker.generation) is BreakerState.OPEN
    assert breaker.try_acquire(10.0) == (True, BreakerState.HALF_OPEN)
    return breaker, early


def test_a_call_from_before_the_opening_does_not_decide_the_half_open_trial() -> None:
    breaker, early = opened_then_half_open()
    assert breaker.record(10.5, OK, 10.5, early) is None  # admitted while CLOSED: not a trial call
    assert breaker.state is BreakerState.HALF_OPEN
    assert breaker.record(10.6, OK, 0.6, breaker.generation) is BreakerState.CLOSED


def test_a_cancelled_call_from_before_gives_back_no_half_open_permit() -> None:
    breaker, early = opened_then_half_open(permitted=1)
    breaker.release(early)
    assert breaker.try_acquire(10.1) == (False, None)  # the one trial call is still out
    breaker.release(breaker.generation)  # the trial call itself is cancelled: its permit comes back
    assert breaker.try_acquire(10.2) == (True, None)


def test_without_a_generation_the_calls_count_as_before() -> None:
    breaker, _ = opened_then_half_open()
    assert breaker.record(10.5, OK, 0.5) is BreakerState.CLOSED
