"""The call policies of a channel, bundled: what happens between a call and its attempts."""

from __future__ import annotations

import attrs

from meshsim.core.breaker import BreakerConfig, ConcurrencyLimit
from meshsim.core.calls import METHOD_OF_PATTERN, Pattern
from meshsim.core.retry import BudgetConfig, HedgingPolicy, RetryPolicy, ThrottleConfig


@attrs.frozen
class CallPolicies:
    retry: RetryPolicy | None = None
    hedging: HedgingPolicy | None = None
    throttle: ThrottleConfig | None = None
    budget: BudgetConfig | None = None
    replica_breaker: BreakerConfig | None = None
    service_breaker: BreakerConfig | None = None
    limits: ConcurrencyLimit | None = None

    def for_method(self, method: str) -> tuple[RetryPolicy | None, HedgingPolicy | None]:
        """The retry or the hedging policy a call of `method` runs under (A6: never both)."""
        retry = self.retry if self.retry is not None and self.retry.covers(method) else None
        if retry is not None:
            return retry, None
        return None, self.hedging if self.hedging is not None and self.hedging.covers(method) else None

    def for_pattern(self, pattern: Pattern) -> tuple[RetryPolicy | None, HedgingPolicy | None]:
        """The policy of a simulated call of `pattern`: the simulated service's method for it."""
        return self.for_method(METHOD_OF_PATTERN[pattern])
