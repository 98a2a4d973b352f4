"""least_connections: the replica with the fewest calls in flight."""

from __future__ import annotations

from collections.abc import Sequence

from meshsim.core.endpoint import Endpoint
from meshsim.core.pickers.base import LbPolicy


class LeastConnectionsPicker:
    """Fewest calls in flight; ties go to the first tied endpoint after a rotating start.

    The rotation makes the tie-break deterministic and still spreads an idle cluster's
    calls evenly instead of piling them on the first endpoint.
    """

    def __init__(self, endpoints: Sequence[Endpoint]) -> None:
        self._endpoints = tuple(endpoints)
        self._start = 0

    def pick(self, key: str | None) -> Endpoint | None:
        endpoints = self._endpoints
        count = len(endpoints)
        start = self._start
        self._start = (start + 1) % count
        best = endpoints[start]
        for offset in range(1, count):
            candidate = endpoints[(start + offset) % count]
            if candidate.in_flight < best.in_flight:
                best = candidate
        return best


POLICY = LbPolicy(
    "least_connections",
    lambda inputs: LeastConnectionsPicker(inputs.endpoints),
    "the fewest calls in flight; ties to the first after a rotating start",
)
