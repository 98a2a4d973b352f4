"""weighted_round_robin: nginx's smooth weighted round robin."""

from __future__ import annotations

from collections.abc import Sequence

from meshsim.core.endpoint import Endpoint
from meshsim.core.pickers.base import LbPolicy


class SmoothWeightedPicker:
    """nginx's smooth weighted round robin: exact proportions, interleaved rather than bursty."""

    def __init__(self, endpoints: Sequence[Endpoint]) -> None:
        self._endpoints = tuple(endpoints)
        self._weights = [max(0, e.weight) for e in self._endpoints]
        self._total = sum(self._weights)
        self._current = [0] * len(self._endpoints)

    def pick(self, key: str | None) -> Endpoint | None:
        if self._total == 0:
            return None
        best = 0
        current = self._current
        for i, weight in enumerate(self._weights):
            current[i] += weight
            if current[i] > current[best]:
                best = i
        current[best] -= self._total
        return self._endpoints[best]


POLICY = LbPolicy(
    "weighted_round_robin",
    lambda inputs: SmoothWeightedPicker(inputs.endpoints),
    "exactly in proportion to the weights, interleaved",
)
