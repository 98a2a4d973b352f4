"""The call policies of a channel, bundled: what happens between a call and its attempts."""

from __future__ import annotations

import attrs

from meshsim.core.breaker import BreakerConfig, ConcurrencyLimit
from meshsim.core.calls import Pattern
from meshsim.core.retry import METHODS, BudgetConfig, HedgingPolicy, RetryPolicy, ThrottleConfig

METHOD_OF_PATTERN = dict(zip(Pattern, METHODS, strict=True))


@attrs.frozen
class CallPolicies:
    retry: RetryPolicy | None = None
    hedging: HedgingPolicy | None = None
    throttle: ThrottleConfig | None = None
    budget: BudgetConfig | None = None
    replica_breaker: BreakerConfig | None = None
    service_breaker: BreakerConfig | None = None
    limits: ConcurrencyLimit | None = None

    def retry_for(self, pattern: Pattern) -> RetryPolicy | None:
        retry = self.retry
        return retry if retry is not None and METHOD_OF_PATTERN[pattern] in retry.methods else None

    def hedging_for(self, pattern: Pattern) -> HedgingPolicy | None:
        hedging = self.hedging
        return hedging if hedging is not None and METHOD_OF_PATTERN[pattern] in hedging.methods else None

    def for_pattern(self, pattern: Pattern) -> tuple[RetryPolicy | None, HedgingPolicy | None]:
        """The retry or the hedging policy a call of `pattern` runs under (A6: never both)."""
        retry = self.retry_for(pattern)
        return retry, None if retry is not None else self.hedging_for(pattern)
