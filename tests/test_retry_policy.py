"""Retry and hedging policies (gRPC A6): backoff and the attempt cap, the retry throttle, the retry budget."""

from __future__ import annotations

import math
import random

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meshsim.core.retry import (
    MAX_ATTEMPTS_CAP,
    BudgetConfig,
    HedgingPolicy,
    RetryBudget,
    RetryPolicy,
    RetryThrottle,
    ThrottleConfig,
)
from meshsim.core.status import StatusCode

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
