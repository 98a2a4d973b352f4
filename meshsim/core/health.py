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

    `initial_healthy`: False (gRPC and Envoy) keeps a replica out until its first check
    passes, and checks it at once; True takes it into rotation before any check, as
    meshsim did before it followed them. `not_serving_at_once`: an answer of
    NOT_SERVING (or SERVICE_UNKNOWN) takes a replica out at once, as Envoy's gRPC
    checker treats an active failure and gRPC a pushed status; the unhealthy
    threshold then counts only probes that got no answer (timeouts, broken
    connections). False counts every failure against the threshold.
    """

    enabled: bool = True
    interval: float = 1.0
    timeout: float = 0.5
    unhealthy_threshold: int = 3
    healthy_threshold: int = 2
    jitter: float = 0.0
    service: str | None = None
    watch: bool = True
    initial_healthy: bool = False
    not_serving_at_once: bool = True


# Answers that say "do not send me calls", as opposed to no answer at all.
_REFUSALS = frozenset({HealthStatus.NOT_SERVING, HealthStatus.SERVICE_UNKNOWN})


@attrs.define
class HealthTracker:
    """Counts consecutive successes and failures and says when the verdict flips.

    An endpoint starts unhealthy and unchecked (`initial_healthy` False, as gRPC keeps a
    subchannel out until it reports SERVING and Envoy marks an actively checked host
    failed until its first check): its first passing check puts it in at once, whatever
    the healthy threshold, as both do. With `initial_healthy` it starts in rotation.
    """

    config: HealthConfig
    healthy: bool = attrs.field(default=attrs.Factory(lambda self: self.config.initial_healthy, takes_self=True))
    checked: bool = attrs.field(default=attrs.Factory(lambda self: self.config.initial_healthy, takes_self=True))
    _successes: int = 0
    _failures: int = 0

    def report(self, status: HealthStatus) -> bool | None:
        """A status the endpoint pushed (Watch): authoritative at once, as gRPC's client health
        checking treats it; returns the new verdict when it changed."""
        self.checked = True
        self._successes = self._failures = 0
        if status.ok != self.healthy:
            self.healthy = status.ok
            return self.healthy
        return None

    def observe(self, status: HealthStatus) -> bool | None:
        """Feed one probe result; return the new verdict when it changed, else None."""
        first = not self.checked
        self.checked = True
        if status.ok:
            self._successes += 1
            self._failures = 0
            if not self.healthy and (first or self._successes >= self.config.healthy_threshold):
                self.healthy = True
                return True
        else:
            self._failures += 1
            self._successes = 0
            refused = self.config.not_serving_at_once and status in _REFUSALS
            if self.healthy and (refused or self._failures >= self.config.unhealthy_threshold):
                self.healthy = False
                return False
        del first
        return None
