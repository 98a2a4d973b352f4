"""weighted_round_robin: nginx's smooth weighted round robin."""

from __future__ import annotations

import heapq
from collections.abc import Sequence

from meshsim.core.endpoint import Endpoint
from meshsim.core.pickers.base import LbPolicy


class SmoothWeightedPicker:
    """nginx's smooth weighted round robin: exact proportions, interleaved rather than bursty.

    nginx adds each weight to its endpoint's counter, picks the highest counter (the first
    such endpoint on a tie) and takes the total weight off it: a scan per pick. The same
    sequence without one: after `t` picks an endpoint's counter is `base + t * weight`,
    where `base` moves only when it is picked, so among endpoints of one weight the
    highest counter is the highest base. Each distinct weight keeps a heap of its
    endpoints by base (then position), and a pick compares the heads of the heaps: the
    number of distinct weights, not of endpoints.
    """

    def __init__(self, endpoints: Sequence[Endpoint]) -> None:
        self._endpoints = tuple(endpoints)
        weights = [max(0, e.weight) for e in self._endpoints]
        self._total = sum(weights)
        # weight -> heap of (-base, position); a weight of 0 never leads (the counters sum to 0
        # after every pick, so the highest is positive), so it has no heap.
        by_weight: dict[int, list[tuple[int, int]]] = {}
        for position, weight in enumerate(weights):
            if weight > 0:
                by_weight.setdefault(weight, []).append((0, position))
        self._classes = list(by_weight.items())
        self._picks = 0

    def pick(self, key: str | None) -> Endpoint | None:
        if self._total == 0:
            return None
        self._picks += 1
        t = self._picks
        best_heap: list[tuple[int, int]] | None = None
        best_value = best_position = 0
        for weight, heap in self._classes:
            negative_base, position = heap[0]
            value = t * weight - negative_base
            if best_heap is None or value > best_value or (value == best_value and position < best_position):
                best_heap, best_value, best_position = heap, value, position
        assert best_heap is not None
        negative_base, position = best_heap[0]
        heapq.heapreplace(best_heap, (negative_base + self._total, position))
        return self._endpoints[position]


POLICY = LbPolicy(
    "weighted_round_robin",
    lambda inputs: SmoothWeightedPicker(inputs.endpoints),
    "exactly in proportion to the weights, interleaved",
)
