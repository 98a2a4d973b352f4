"""peak_ewma: Finagle's and Linkerd's Peak-EWMA."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

from meshsim.core.endpoint import Endpoint
from meshsim.core.pickers.base import LbPolicy


class PeakEwmaPicker:
    """Finagle's and Linkerd's Peak-EWMA: power of two choices on cost = latency estimate x (in flight + 1)."""

    def __init__(self, endpoints: Sequence[Endpoint], rng: random.Random, now: Callable[[], float]) -> None:
        self._endpoints = tuple(endpoints)
        self._rng = rng
        self._now = now

    def _cost(self, endpoint: Endpoint, now: float) -> float:
        assert endpoint.latency is not None, "peak_ewma needs endpoints with latency estimates"
        return endpoint.latency.estimate(now) * (endpoint.in_flight + 1)

    def pick(self, key: str | None) -> Endpoint | None:
        if len(self._endpoints) == 1:
            return self._endpoints[0]
        first, second = self._rng.sample(self._endpoints, 2)
        now = self._now()
        return second if self._cost(second, now) < self._cost(first, now) else first


POLICY = LbPolicy(
    "peak_ewma",
    lambda inputs: PeakEwmaPicker(inputs.endpoints, inputs.rng, inputs.now),
    "the lower latency estimate x (in flight + 1) of two replicas sampled at random",
    latency=True,
)
