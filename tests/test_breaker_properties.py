"""The circuit breaker at large: what a call costs, agreement with a naive model of
resilience4j, and the half-open bound under any sequence of calls.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from types import FrameType

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meshsim.core.breaker import BreakerConfig, BreakerState, CircuitBreaker
from meshsim.core.status import StatusCode
from tests.resilience import CLOSED, FAIL, HALF_OPEN, OK, OPEN, breaker, window_counts


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
