"""least_connections: the replica with the fewest calls in flight."""

from __future__ import annotations

from bisect import bisect_left, insort
from collections.abc import Sequence

from meshsim.core.endpoint import Endpoint
from meshsim.core.pickers.base import LbPolicy


class LeastConnectionsPicker:
    """Fewest calls in flight; ties go to the first tied endpoint after a rotating start.

    The rotation makes the tie-break deterministic and still spreads an idle cluster's
    calls evenly instead of piling them on the first endpoint.

    No pick scans the endpoints: they are kept in buckets by calls in flight (each bucket
    the endpoints' positions, ascending), so a pick is the least bucket's first position
    at or after the start, and each endpoint tells the picker that holds it (`moved`, its
    `load_watcher`) when its count changes. A scan of 10,000 endpoints per pick cost about 1 ms.
    """

    def __init__(self, endpoints: Sequence[Endpoint]) -> None:
        self._endpoints = tuple(endpoints)
        self._start = 0
        self._position = {endpoint: i for i, endpoint in enumerate(self._endpoints)}
        self._load = [endpoint.in_flight for endpoint in self._endpoints]
        self._buckets: dict[int, list[int]] = {}
        for position, load in enumerate(self._load):
            self._buckets.setdefault(load, []).append(position)
        self._least = min(self._buckets)
        for endpoint in self._endpoints:
            endpoint.load_watcher = self.moved

    def pick(self, key: str | None) -> Endpoint | None:
        start = self._start
        self._start = start + 1 if start + 1 < len(self._endpoints) else 0
        bucket = self._buckets[self._least]
        i = bisect_left(bucket, start)
        return self._endpoints[bucket[i] if i < len(bucket) else bucket[0]]

    def moved(self, endpoint: Endpoint) -> None:
        """`endpoint.in_flight` changed (an endpoint this picker does not hold is ignored)."""
        position = self._position.get(endpoint)
        if position is None:
            return
        before = self._load[position]
        after = endpoint.in_flight
        if before == after:
            return
        self._load[position] = after
        buckets = self._buckets
        bucket = buckets[before]
        if len(bucket) == 1:
            del buckets[before]
        else:
            del bucket[bisect_left(bucket, position)]
        target = buckets.get(after)
        if target is None:
            buckets[after] = [position]
        else:
            insort(target, position)
        if after < self._least:
            self._least = after
        elif before == self._least and before not in buckets:
            self._least = min(buckets)


POLICY = LbPolicy(
    "least_connections",
    lambda inputs: LeastConnectionsPicker(inputs.endpoints),
    "the fewest calls in flight; ties to the first after a rotating start",
)
