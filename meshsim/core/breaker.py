"""Circuit breakers with resilience4j's semantics, and Envoy-style concurrency limits."""

from __future__ import annotations

import collections
import enum
import math

import attrs

from meshsim.core.status import SERVER_FAILURES, StatusCode

_floor = math.floor


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
    OPEN again. Every change of state starts an empty window. Times are passed in, never read.

    The windows are resilience4j's, and so is what they cost: recording an outcome is
    O(1) (amortised), whatever the window's size. A count window is a ring of the last
    `window_size` outcomes with running totals. A time window is at most `window_size`
    per-second buckets (calls, failed calls, slow calls, and the second each belongs to)
    with running totals; as in resilience4j's SlidingTimeWindowMetrics, which buckets
    by epoch second, its seconds are whole seconds of the clock passed in
    (`floor(now)`): the window at time t holds the calls of seconds
    `floor(t) - window_size + 1` to `floor(t)`, so a call leaves it as the clock reaches
    the whole second `window_size` after its own, all the calls of one second together
    (a call at 10.9 leaves a 3 s window at 13.0, like one at 10.0). An outcome recorded
    with a time earlier than the latest one (a clock that stepped back) counts in the
    latest second.
    """

    def __init__(self, config: BreakerConfig) -> None:
        self.config = config
        self.state = BreakerState.CLOSED
        self._window: _CountWindow | _TimeWindow = (
            _TimeWindow(config.window_size) if config.window_type == "time" else _CountWindow(config.window_size)
        )
        # As in resilience4j, a count window smaller than minimum_calls needs only a full window.
        self._needed = (
            config.minimum_calls if config.window_type == "time" else min(config.minimum_calls, config.window_size)
        )
        self._opened_at = 0.0
        self._half_open_permits = 0
        # Bumped at every change of state: a call's permit belongs to the period that issued it, and
        # outcomes and releases from an earlier one are not this period's business.
        self.generation = 0
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

    def release(self, generation: int | None = None) -> None:
        """A call let through ended with no outcome to record (cancelled, or refused further on):
        in HALF_OPEN its permit is given back, as resilience4j's releasePermission does, or the
        breaker would wait for a result that never comes. `generation`: the one the call's permit
        was issued in (a permit from an earlier period gives nothing back)."""
        if generation is not None and generation != self.generation:
            return
        if self.state is BreakerState.HALF_OPEN:
            self._half_open_permits = min(self._half_open_permits + 1, self.config.permitted_calls_in_half_open)

    def record(
        self, now: float, status: StatusCode, duration: float, generation: int | None = None
    ) -> BreakerState | None:
        """Record the outcome of a call that was let through; returns the new state if it moved.
        With `generation` (the breaker's when the call was let through), a call admitted in an
        earlier period does not count: not once the breaker has opened, nor as a half-open trial."""
        if generation is not None and generation != self.generation:
            return None
        config = self.config
        failed = status in config.failure_status_codes
        slow = duration >= config.slow_call_duration
        if self.state is BreakerState.HALF_OPEN:
            self._half_open_results.append((failed, slow))
            if len(self._half_open_results) < config.permitted_calls_in_half_open:
                return None
            failure_rate, slow_rate = _rates(self._half_open_results)
            target = BreakerState.OPEN if self._over(failure_rate, slow_rate) else BreakerState.CLOSED
            return self._enter(target, now)
        if self.state is BreakerState.OPEN:
            return None  # a call admitted before the breaker opened: it no longer counts
        window = self._window
        window.record(now, failed, slow)
        calls = window.calls
        if calls < self._needed:
            return None
        if self._over(window.failed * 100.0 / calls, window.slow * 100.0 / calls):
            return self._enter(BreakerState.OPEN, now)
        return None

    def snapshot(self, now: float) -> WindowSnapshot:
        """What the window holds at `now` (resilience4j's Metrics snapshot); empty unless CLOSED."""
        window = self._window
        if isinstance(window, _TimeWindow):
            window.advance(now)
        return WindowSnapshot(window.calls, window.failed, window.slow)

    def _over(self, failure_rate: float, slow_rate: float) -> bool:
        return failure_rate >= self.config.failure_rate_threshold or slow_rate >= self.config.slow_call_rate_threshold

    def _enter(self, state: BreakerState, now: float) -> BreakerState:
        self.state = state
        self.generation += 1
        self._window.clear()
        self._half_open_results = []
        if state is BreakerState.OPEN:
            self._opened_at = now
        elif state is BreakerState.HALF_OPEN:
            self._half_open_permits = self.config.permitted_calls_in_half_open
        return state


@attrs.frozen
class WindowSnapshot:
    """The outcomes in a breaker's window: calls, and how many of them failed or were slow."""

    calls: int
    failed_calls: int
    slow_calls: int

    @property
    def failure_rate(self) -> float:
        """Percent of the calls that failed (0 with no calls)."""
        return self.failed_calls * 100.0 / self.calls if self.calls else 0.0

    @property
    def slow_call_rate(self) -> float:
        """Percent of the calls that were slow (0 with no calls)."""
        return self.slow_calls * 100.0 / self.calls if self.calls else 0.0


class _CountWindow:
    """The last `size` outcomes, as a ring of small ints (1: failed, 2: slow), with running totals."""

    __slots__ = ("_next", "_ring", "_size", "calls", "failed", "slow")

    def __init__(self, size: int) -> None:
        self._size = size
        self._ring: list[int] = []  # grows to `size` as outcomes arrive, then is overwritten in turn
        self._next = 0  # once the ring is full: the oldest outcome, the next to be replaced
        self.calls = 0
        self.failed = 0
        self.slow = 0

    def record(self, now: float, failed: bool, slow: bool) -> None:
        outcome = (1 if failed else 0) | (2 if slow else 0)
        ring = self._ring
        if len(ring) < self._size:
            ring.append(outcome)
            self.calls += 1
        else:
            index = self._next
            gone = ring[index]
            ring[index] = outcome
            self._next = index + 1 if index + 1 < self._size else 0
            if gone & 1:
                self.failed -= 1
            if gone & 2:
                self.slow -= 1
        if failed:
            self.failed += 1
        if slow:
            self.slow += 1

    def clear(self) -> None:
        self._ring = []
        self._next = 0
        self.calls = self.failed = self.slow = 0


class _Bucket:
    __slots__ = ("calls", "failed", "second", "slow")

    def __init__(self, second: int) -> None:
        self.second = second
        self.calls = 0
        self.failed = 0
        self.slow = 0


class _TimeWindow:
    """The outcomes of the last `size` whole seconds: one bucket per second that had calls, oldest
    first, with running totals. Each bucket is added once and dropped once, so recording is O(1)
    amortised and the window never holds more than `size` buckets."""

    __slots__ = ("_buckets", "_size", "calls", "failed", "slow")

    def __init__(self, size: int) -> None:
        self._size = size
        self._buckets: collections.deque[_Bucket] = collections.deque()
        self.calls = 0
        self.failed = 0
        self.slow = 0

    def record(self, now: float, failed: bool, slow: bool) -> None:
        second = _floor(now)
        buckets = self._buckets
        if buckets and buckets[-1].second >= second:
            bucket = buckets[-1]  # this second's (or a clock that stepped back: the latest second's)
        else:
            self._drop_before(second - self._size + 1)
            bucket = _Bucket(second)
            buckets.append(bucket)
        bucket.calls += 1
        self.calls += 1
        if failed:
            bucket.failed += 1
            self.failed += 1
        if slow:
            bucket.slow += 1
            self.slow += 1

    def advance(self, now: float) -> None:
        """Let the seconds that are over by `now` leave the window."""
        self._drop_before(_floor(now) - self._size + 1)

    def _drop_before(self, first_second: int) -> None:
        buckets = self._buckets
        while buckets and buckets[0].second < first_second:
            gone = buckets.popleft()
            self.calls -= gone.calls
            self.failed -= gone.failed
            self.slow -= gone.slow

    def clear(self) -> None:
        self._buckets.clear()
        self.calls = self.failed = self.slow = 0


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
