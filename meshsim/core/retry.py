"""Retries and hedging with gRPC A6 semantics, and the two ways of keeping retries in check.

A method has a retry policy or a hedging policy, never both (A6); the scenario
loader rejects a scenario that gives one method both.
"""

from __future__ import annotations

import random

import attrs

from meshsim.core.status import StatusCode

# A6 caps maxAttempts at 5; larger configured values are treated as 5.
MAX_ATTEMPTS_CAP = 5


def covers(methods: tuple[str, ...] | None, method: str) -> bool:
    """Whether a policy naming `methods` (None: every method) covers `method`, a short name or a
    full path "/package.Service/Method"."""
    return methods is None or method in methods or method.rsplit("/", 1)[-1] in methods


@attrs.frozen
class RetryPolicy:
    """A6 retry policy.

    The n-th retry waits `b * (1 - jitter * U)` with U uniform in [0, 1) and
    `b = min(initial_backoff * backoff_multiplier ** (n - 1), max_backoff)`; with
    the default jitter of 1 this is A6's `random(0, b)`. A server pushback of N >= 0
    ms replaces the wait with exactly N ms and restarts the sequence from
    `initial_backoff`; a negative pushback ends retrying.
    """

    max_attempts: int = 3
    initial_backoff: float = 0.1
    max_backoff: float = 1.0
    backoff_multiplier: float = 2.0
    jitter: float = 1.0
    retryable_status_codes: frozenset[StatusCode] = frozenset({StatusCode.UNAVAILABLE})
    per_attempt_timeout: float | None = None
    # The methods it covers, by short name ("Process") or full path ("/pkg.Svc/Process"); None: all.
    methods: tuple[str, ...] | None = None
    # A retry goes to a replica not tried yet where one is usable (Envoy's previous_hosts retry
    # predicate); off, a retry is picked like any call, as gRPC does (ring hash: the same replica).
    previous_hosts: bool = False

    @property
    def attempts(self) -> int:
        return min(self.max_attempts, MAX_ATTEMPTS_CAP)

    def covers(self, method: str) -> bool:
        return covers(self.methods, method)

    def backoff(self, step: int, rng: random.Random) -> float:
        """The wait before retry number `step` counted since the last pushback (1 = the first).

        Never raises: growth that would overflow a float (a multiplier of 1e200, a huge
        step) is simply past `max_backoff`, which is the ceiling then.
        """
        ceiling = self.initial_backoff
        cap = self.max_backoff
        multiplier = self.backoff_multiplier
        # Once at the cap, growth changes nothing: skip it (a multiplier below 1 still shrinks).
        if step > 1 and ceiling > 0.0 and (ceiling < cap or multiplier < 1.0):
            try:
                ceiling *= multiplier ** (step - 1)
            except OverflowError:  # only growth overflows, and grown that far it is past the cap
                ceiling = cap
        if not ceiling <= cap:  # also an inf, or a nan from inf * 0
            ceiling = cap
        return ceiling * (1.0 - self.jitter * rng.random()) if self.jitter else ceiling


@attrs.frozen
class HedgingPolicy:
    """A6 hedging: a new attempt every `hedging_delay` (at once after a non-fatal failure)
    until one answers OK or with a fatal status, up to `max_attempts` in all."""

    max_attempts: int = 2
    hedging_delay: float = 0.05
    non_fatal_status_codes: frozenset[StatusCode] = frozenset()
    methods: tuple[str, ...] | None = None  # as RetryPolicy.methods

    def covers(self, method: str) -> bool:
        return covers(self.methods, method)

    @property
    def attempts(self) -> int:
        return min(self.max_attempts, MAX_ATTEMPTS_CAP)


@attrs.frozen
class ThrottleConfig:
    """gRPC's retry throttling (A6): a token bucket per client and service."""

    max_tokens: float = 100.0
    token_ratio: float = 0.1


@attrs.define
class RetryThrottle:
    """Every failed attempt with a retryable (or non-fatal) status costs a token, every
    success returns `token_ratio`; retries and hedges stop while tokens <= max_tokens / 2."""

    config: ThrottleConfig
    tokens: float = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self.tokens = self.config.max_tokens

    def record_failure(self) -> None:
        self.tokens = max(0.0, self.tokens - 1.0)

    def record_success(self) -> None:
        self.tokens = min(self.config.max_tokens, self.tokens + self.config.token_ratio)

    def allows_retry(self) -> bool:
        return self.tokens > self.config.max_tokens / 2


@attrs.frozen
class BudgetConfig:
    """Envoy's retry budget: retries in progress may be at most `budget_percent` of the
    calls in progress, but at least `min_retry_concurrency`."""

    budget_percent: float = 20.0
    min_retry_concurrency: int = 3


@attrs.define
class RetryBudget:
    """Counts retries in progress, from the moment one is decided (so retries waiting in
    backoff count) until its attempt ends."""

    config: BudgetConfig
    active_retries: int = 0

    def allows_retry(self, active_calls: int) -> bool:
        limit = max(self.config.min_retry_concurrency, self.config.budget_percent / 100.0 * active_calls)
        return self.active_retries < limit
