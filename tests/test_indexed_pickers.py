"""The pickers that index endpoints (least connections by load, smooth WRR by weight) choose
exactly what the scans they replace chose, pick for pick."""

from __future__ import annotations

import random
from collections.abc import Sequence

from hypothesis import given, settings
from hypothesis import strategies as st

from meshsim.core.endpoint import Endpoint
from meshsim.core.pickers import LeastConnectionsPicker, SmoothWeightedPicker


class ScanLeastConnections:
    """The picker as it was: a scan from a rotating start."""

    def __init__(self, endpoints: Sequence[Endpoint]) -> None:
        self._endpoints = tuple(endpoints)
        self._start = 0

    def pick(self) -> Endpoint:
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


class ScanSmoothWeighted:
    """nginx's smooth weighted round robin as nginx writes it."""

    def __init__(self, endpoints: Sequence[Endpoint]) -> None:
        self._endpoints = tuple(endpoints)
        self._weights = [max(0, e.weight) for e in self._endpoints]
        self._total = sum(self._weights)
        self._current = [0] * len(self._endpoints)

    def pick(self) -> Endpoint | None:
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


@settings(max_examples=60, deadline=None)
@given(size=st.integers(1, 12), seed=st.integers(0, 2**32), outsiders=st.integers(0, 2))
def test_least_connections_picks_as_the_scan(size: int, seed: int, outsiders: int) -> None:
    rng = random.Random(seed)
    endpoints = [Endpoint(f"e{i}", index=i, in_flight=rng.randrange(3)) for i in range(size + outsiders)]
    held, others = endpoints[:size], endpoints[size:]
    indexed = LeastConnectionsPicker(held)
    scan = ScanLeastConnections(held)
    for _ in range(200):
        if rng.random() < 0.5:
            assert indexed.pick(None) is scan.pick()
        else:
            # A call starts or ends somewhere, an endpoint outside the picker's set included; the
            # endpoint tells the picker that holds it.
            endpoint = rng.choice(endpoints)
            if endpoint.in_flight and rng.random() < 0.5:
                endpoint.in_flight -= 1
            else:
                endpoint.in_flight += 1
    assert all(e.in_flight >= 0 for e in others)


@settings(max_examples=60, deadline=None)
@given(weights=st.lists(st.integers(0, 7), min_size=1, max_size=10))
def test_smooth_weighted_picks_as_nginx(weights: list[int]) -> None:
    endpoints = [Endpoint(f"e{i}", weight=w, index=i) for i, w in enumerate(weights)]
    indexed = SmoothWeightedPicker(endpoints)
    scan = ScanSmoothWeighted(endpoints)
    for _ in range(3 * sum(weights) + 5):
        assert indexed.pick(None) is scan.pick()


def test_a_large_equal_weight_wrr_is_round_robin_from_the_first() -> None:
    endpoints = [Endpoint(f"e{i}", weight=3, index=i) for i in range(1000)]
    picker = SmoothWeightedPicker(endpoints)
    assert [picker.pick(None) for _ in range(2000)] == endpoints * 2
