"""Circuit breakers with resilience4j's semantics, and Envoy-style concurrency limits."""

from __future__ import annotations

import collections
import enum

import attrs

from meshsim.core.status import SERVER_FAILURES, StatusCode


class BreakerState(enum.Enum):
    CLOSED = "CLOSED"
    OPEN = "OPEN"
    HALF_OPEN = "HALF_OPEN"


@attrs.frozen
class BreakerConfig:
    """resilience4j's CircuitBreakerConfig, with its defaults.

    `window_type` is "count" (the last `window_size` calls) or "time" (the calls of
    the last `window_size` seconds). Rates are percentages.
    """

    window_type: str = "count"
    window_size: int = 100
    minimum_calls: int = 100
    failure_rate_threshold: float = 50.0
    slow_call_rate_threshold: float = 100.0
    slow_call_duration: float = 60.0
    wait_duration_in_open: float = 60.0
    permitted_calls_in_half_open: int = 10
    failure_status_codes: frozenset[StatusCode] = SERVER_FAILURES


class CircuitBreaker:
    """CLOSED records outcomes in a sliding window and opens when, with at least
    `minimum_calls` in the window, the failure rate or the slow-call rate reaches its
    threshold. OPEN rejects calls until `wait_duration_in_open` has passed, then the
    next call finds it HALF_OPEN: exactly `permitted_calls_in_half_open` calls are let
    through, and once all of them have ended their rates decide between CLOSED and
    OPEN again. Times are passed in, never read.
    """

    def __init__(self, config: BreakerConfig) -> None:
        self.config = config
        self.state = BreakerState.CLOSED
        self._window: collections.deque[tuple[float, bool, bool]] = collections.deque()
        self._opened_at = 0.0
        self._half_open_permits = 0
        self._half_open_results: list[tuple[bool, bool]] = []

    def try_acquire(self, now: float) -> tuple[bool, BreakerState | None]:
        """May a call go through now? Also returns the state it moved to, if it moved."""
        moved = None
        if self.state is BreakerState.OPEN and now - self._opened_at >= self.config.wait_duration_in_open:
            moved = self._enter(BreakerState.HALF_OPEN, now)
        if self.state is BreakerState.CLOSED:
            return True, moved
        if self.state is BreakerState.HALF_OPEN and self._half_open_permits > 0:
            self._half_open_permits -= 1
            return True, moved
        return False, moved

    def record(self, now: float, status: StatusCode, duration: float) -> BreakerState | None:
        """Record the outcome of a call that was let through; returns the new state if it moved."""
        failed = status in self.config.failure_status_codes
        slow = duration >= self.config.slow_call_duration
        if self.state is BreakerState.HALF_OPEN:
            self._half_open_results.append((failed, slow))
            if len(self._half_open_results) < self.config.permitted_calls_in_half_open:
                return None
            failure_rate, slow_rate = _rates(self._half_open_results)
            target = BreakerState.OPEN if self._over(failure_rate, slow_rate) else BreakerState.CLOSED
            return self._enter(target, now)
        if self.state is BreakerState.OPEN:
            return None  # a call admitted before the breaker opened: it no longer counts
        window = self._window
        window.append((now, failed, slow))
        if self.config.window_type == "count":
            while len(window) > self.config.window_size:
                window.popleft()
        else:
            while window and window[0][0] <= now - self.config.window_size:
                window.popleft()
        # As in resilience4j, a count window smaller than minimum_calls needs only a full window.
        needed = self.config.minimum_calls
        if self.config.window_type == "count":
            needed = min(needed, self.config.window_size)
        if len(window) < needed:
            return None
        failure_rate, slow_rate = _rates([(f, s) for _, f, s in window])
        if self._over(failure_rate, slow_rate):
            return self._enter(BreakerState.OPEN, now)
        return None

    def _over(self, failure_rate: float, slow_rate: float) -> bool:
        return failure_rate >= self.config.failure_rate_threshold or slow_rate >= self.config.slow_call_rate_threshold

    def _enter(self, state: BreakerState, now: float) -> BreakerState:
        self.state = state
        self._window.clear()
        self._half_open_results = []
        if state is BreakerState.OPEN:
            self._opened_at = now
        elif state is BreakerState.HALF_OPEN:
            self._half_open_permits = self.config.permitted_calls_in_half_open
        return state


def _rates(results: list[tuple[bool, bool]]) -> tuple[float, float]:
    if not results:
        return 0.0, 0.0
    count = len(results)
    failures = sum(1 for failed, _ in results if failed)
    slow = sum(1 for _, is_slow in results if is_slow)
    return failures * 100.0 / count, slow * 100.0 / count


@attrs.frozen
class ConcurrencyLimit:
    """Envoy-style limits per client and service: at most `max_requests` calls in
    progress; beyond that up to `max_pending` wait (FIFO) for a slot; beyond that a
    call fails at once with UNAVAILABLE (Envoy's overflow)."""

    max_requests: int = 1024
    max_pending: int = 1024
    # At most this many calls in flight on one replica (a connection pool's per-endpoint cap);
    # a call finding every replica at its cap fails over to none: UNAVAILABLE.
    max_requests_per_endpoint: int | None = None
