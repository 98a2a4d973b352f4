"""Outlier detection (passive health checking) as in gRPC's A50 and Envoy.

Every `interval` the success-rate and failure-percentage detectors look at each
endpoint's calls since the last sweep; the consecutive-failures detector ejects as
soon as its threshold is reached. An ejected endpoint returns after
`min(base_ejection_time * multiplier, max(base_ejection_time, max_ejection_time))`;
the multiplier grows by one with each ejection and, with `multiplier_decay`, shrinks
by one each interval the endpoint spends in rotation.

`max_ejection_percent` is applied as A50 does (`ejection_cap = "current"`: an
ejection happens while the share already ejected is below the cap, so the cap can be
overshot by one) or as Envoy does (`"prospective"`: only if the share after it is
within the cap; with `always_eject_one_host` one host may be ejected whatever the
cap, otherwise 10 % of 3 replicas ejects none). Whatever the rule, the last endpoint
in rotation is never ejected (so it is never "eject the only host").
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

import attrs

from meshsim.core.status import SERVER_FAILURES, StatusCode


@attrs.frozen
class ConsecutiveFailuresConfig:
    threshold: int = 5
    enforcement_percentage: float = 100.0
    status_codes: frozenset[StatusCode] = SERVER_FAILURES


@attrs.frozen
class SuccessRateConfig:
    """Eject endpoints whose success rate is below mean - stdev * stdev_factor / 1000."""

    stdev_factor: int = 1900
    enforcement_percentage: float = 100.0
    minimum_hosts: int = 5
    request_volume: int = 100


@attrs.frozen
class FailurePercentageConfig:
    threshold: float = 85.0
    enforcement_percentage: float = 100.0
    minimum_hosts: int = 5
    request_volume: int = 50


@attrs.frozen
class OutlierConfig:
    interval: float = 10.0
    base_ejection_time: float = 30.0
    max_ejection_time: float = 300.0
    max_ejection_percent: float = 10.0
    failure_status_codes: frozenset[StatusCode] = SERVER_FAILURES
    # How max_ejection_percent is applied (core/presets.py): "current" (A50) or "prospective" (Envoy).
    ejection_cap: str = "current"
    always_eject_one_host: bool = False
    multiplier_decay: bool = True
    consecutive_failures: ConsecutiveFailuresConfig | None = None
    success_rate: SuccessRateConfig | None = None
    failure_percentage: FailurePercentageConfig | None = None


@attrs.define
class _EndpointStats:
    successes: int = 0
    failures: int = 0
    consecutive: int = 0
    ejected_at: float | None = None
    multiplier: int = 0


@attrs.frozen
class Ejection:
    endpoint: str
    detector: str
    duration: float


class OutlierDetector:
    """Pure bookkeeping: the balancer actor feeds it call outcomes and sweeps it on its interval."""

    def __init__(self, config: OutlierConfig, endpoints: Sequence[str], rng: random.Random) -> None:
        self.config = config
        self._rng = rng
        self._stats = {name: _EndpointStats() for name in endpoints}

    def is_ejected(self, endpoint: str) -> bool:
        stats = self._stats.get(endpoint)
        return stats is not None and stats.ejected_at is not None

    def track(self, endpoints: Sequence[str]) -> None:
        """Count exactly these endpoints from now on (discovery changed the set): new ones start
        clean, dropped ones are forgotten with their ejections."""
        self._stats = {name: self._stats.get(name) or _EndpointStats() for name in endpoints}

    @property
    def ejected(self) -> list[str]:
        return [name for name, s in self._stats.items() if s.ejected_at is not None]

    def record(self, endpoint: str, status: StatusCode, now: float) -> Ejection | None:
        """Count one call outcome; returns an ejection if consecutive failures triggered one."""
        stats = self._stats.get(endpoint)
        if stats is None:
            return None  # a call that outlived its endpoint's removal
        if status is StatusCode.OK:
            stats.successes += 1
            stats.consecutive = 0
            return None
        if status in self.config.failure_status_codes:
            stats.failures += 1
        detector = self.config.consecutive_failures
        if detector is None or status not in detector.status_codes:
            return None
        stats.consecutive += 1
        if stats.consecutive >= detector.threshold and stats.ejected_at is None:
            stats.consecutive = 0
            if self._enforced(detector.enforcement_percentage) and self._may_eject():
                return self._eject(endpoint, "consecutive_failures", now)
        return None

    def sweep(self, now: float) -> tuple[list[Ejection], list[str]]:
        """The interval timer fired: run the rate detectors, then return endpoints whose time is up."""
        ejections: list[Ejection] = []
        if self.config.success_rate is not None:
            ejections += self._success_rate(self.config.success_rate, now)
        if self.config.failure_percentage is not None:
            ejections += self._failure_percentage(self.config.failure_percentage, now)
        returned = []
        for name, stats in self._stats.items():
            stats.successes = stats.failures = 0
            if stats.ejected_at is None:
                if self.config.multiplier_decay:
                    stats.multiplier = max(0, stats.multiplier - 1)
            elif now >= stats.ejected_at + self._ejection_time(stats):
                stats.ejected_at = None
                # Failures of calls that were in flight at the ejection do not count against a fresh start
                # (Envoy resets here too, "to avoid re-ejection on very few new errors").
                stats.consecutive = 0
                returned.append(name)
        return ejections, returned

    def _candidates(self, request_volume: int) -> list[tuple[str, float]]:
        """(endpoint, success rate) of endpoints in rotation with enough calls this interval."""
        found = []
        for name, stats in self._stats.items():
            volume = stats.successes + stats.failures
            if stats.ejected_at is None and volume >= request_volume and volume > 0:
                found.append((name, stats.successes / volume))
        return found

    def _success_rate(self, config: SuccessRateConfig, now: float) -> list[Ejection]:
        candidates = self._candidates(config.request_volume)
        if len(candidates) < config.minimum_hosts:
            return []
        rates = [rate for _, rate in candidates]
        mean = math.fsum(rates) / len(rates)
        stdev = math.sqrt(math.fsum((r - mean) ** 2 for r in rates) / len(rates))
        floor = mean - stdev * (config.stdev_factor / 1000.0)
        ejections = []
        for name, rate in candidates:
            if rate < floor and self._may_eject() and self._enforced(config.enforcement_percentage):
                ejections.append(self._eject(name, "success_rate", now))
        return ejections

    def _failure_percentage(self, config: FailurePercentageConfig, now: float) -> list[Ejection]:
        candidates = self._candidates(config.request_volume)
        if len(candidates) < config.minimum_hosts:
            return []
        ejections = []
        for name, rate in candidates:
            failing = (1.0 - rate) * 100.0
            if (
                failing > config.threshold
                and not self.is_ejected(name)
                and self._may_eject()
                and self._enforced(config.enforcement_percentage)
            ):
                ejections.append(self._eject(name, "failure_percentage", now))
        return ejections

    def _may_eject(self) -> bool:
        total = len(self._stats)
        ejected = len(self.ejected)
        if ejected + 1 >= total:
            return False  # the last endpoint in rotation stays
        cap = self.config.max_ejection_percent * total
        if self.config.ejection_cap == "current":
            return ejected * 100.0 < cap  # A50: the share ejected so far is under the cap
        if (ejected + 1) * 100.0 <= cap:
            return True  # Envoy: the share after this ejection is within the cap
        return ejected == 0 and self.config.always_eject_one_host

    def _enforced(self, percentage: float) -> bool:
        return percentage >= 100.0 or self._rng.random() * 100.0 < percentage

    def _ejection_time(self, stats: _EndpointStats) -> float:
        base = self.config.base_ejection_time
        return min(base * stats.multiplier, max(base, self.config.max_ejection_time))

    def _eject(self, endpoint: str, detector: str, now: float) -> Ejection:
        stats = self._stats[endpoint]
        stats.ejected_at = now
        stats.multiplier += 1
        return Ejection(endpoint, detector, self._ejection_time(stats))
