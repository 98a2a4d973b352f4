"""Shared by the tests of the pure resilience state machines: status and state shorthands, a breaker.

Time is passed in as a number everywhere, so the tests drive each machine by hand.
"""

from __future__ import annotations

from meshsim.core.breaker import BreakerConfig, BreakerState, CircuitBreaker
from meshsim.core.status import StatusCode

OK = StatusCode.OK
FAIL = StatusCode.UNAVAILABLE

CLOSED = BreakerState.CLOSED
OPEN = BreakerState.OPEN
HALF_OPEN = BreakerState.HALF_OPEN


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


def window_counts(cb: CircuitBreaker, now: float) -> tuple[int, int, int]:
    snapshot = cb.snapshot(now)
    return snapshot.calls, snapshot.failed_calls, snapshot.slow_calls
