"""The active health-check state machine: thresholds over consecutive probe results."""

from __future__ import annotations

import attrs

from meshsim.core.status import HealthStatus


@attrs.frozen
class HealthConfig:
    """Envoy's vocabulary; probes speak grpc.health.v1.

    `service` is the name sent in HealthCheckRequest; None means "the service's own name".
    `jitter` is a fraction of `interval` added at random to each wait, so that many
    checkers started together do not probe in lock step.
    """

    enabled: bool = True
    interval: float = 1.0
    timeout: float = 0.5
    unhealthy_threshold: int = 3
    healthy_threshold: int = 2
    jitter: float = 0.0
    service: str | None = None
    watch: bool = True


@attrs.define
class HealthTracker:
    """Counts consecutive successes and failures and says when the verdict flips.

    An endpoint starts healthy (as Envoy treats hosts before their first check when
    it is not told otherwise): a fresh replica takes traffic at once, and a dead one
    is taken out after `unhealthy_threshold` failed probes.
    """

    config: HealthConfig
    healthy: bool = True
    _successes: int = 0
    _failures: int = 0

    def report(self, status: HealthStatus) -> bool | None:
        """A status the endpoint pushed (Watch): authoritative at once, as gRPC's client health
        checking treats it; returns the new verdict when it changed."""
        self._successes = self._failures = 0
        if status.ok != self.healthy:
            self.healthy = status.ok
            return self.healthy
        return None

    def observe(self, status: HealthStatus) -> bool | None:
        """Feed one probe result; return the new verdict when it changed, else None."""
        if status.ok:
            self._successes += 1
            self._failures = 0
            if not self.healthy and self._successes >= self.config.healthy_threshold:
                self.healthy = True
                return True
        else:
            self._failures += 1
            self._successes = 0
            if self.healthy and self._failures >= self.config.unhealthy_threshold:
                self.healthy = False
                return False
        return None
