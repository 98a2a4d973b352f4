"""Peak-EWMA: the latency estimate and the picker that weighs it by calls in flight."""

from __future__ import annotations

import math
import random

import pytest

from meshsim.core.endpoint import Endpoint
from meshsim.core.ewma import PeakEwma, PeakEwmaConfig
from meshsim.core.pickers import BalancerConfig, PeakEwmaPicker, build_picker


def test_peak_ewma_starts_at_default_rtt() -> None:
    ewma = PeakEwma(PeakEwmaConfig(decay=10.0, default_rtt=0.030), now=5.0)
    assert ewma.estimate(5.0) == 0.030
    assert ewma.estimate(4.0) == 0.030  # no time has passed (or it went backwards)
    assert PeakEwma(PeakEwmaConfig(), now=0.0).estimate(0.0) == 0.030


def test_peak_ewma_jumps_straight_up_to_a_larger_sample() -> None:
    ewma = PeakEwma(PeakEwmaConfig(decay=10.0, default_rtt=0.030), now=0.0)
    ewma.observe(0.5, 1.0)
    assert ewma.estimate(1.0) == 0.5
    ewma.observe(2.0, 1.0)
    assert ewma.estimate(1.0) == 2.0


def test_peak_ewma_blends_toward_a_smaller_sample() -> None:
    ewma = PeakEwma(PeakEwmaConfig(decay=10.0, default_rtt=1.0), now=0.0)
    ewma.observe(0.2, 5.0)
    weight = math.exp(-5.0 / 10.0)
    assert ewma.estimate(5.0) == pytest.approx(1.0 * weight + 0.2 * (1.0 - weight), rel=1e-12)
    assert 0.2 < ewma.estimate(5.0) < 1.0
    # A sample at the same instant has weight 1 on the old estimate: nothing changes.
    before = ewma.estimate(5.0)
    ewma.observe(0.0, 5.0)
    assert ewma.estimate(5.0) == pytest.approx(before, rel=1e-12)
    # Many samples of the same value converge on it.
    for i in range(1, 200):
        ewma.observe(0.2, 5.0 + i)
    assert ewma.estimate(204.0) == pytest.approx(0.2, rel=1e-6)


def test_peak_ewma_decays_toward_zero_while_idle() -> None:
    ewma = PeakEwma(PeakEwmaConfig(decay=10.0, default_rtt=0.030), now=0.0)
    ewma.observe(0.1, 0.0)
    estimates = [ewma.estimate(t) for t in (0.0, 1.0, 10.0, 100.0, 1000.0)]
    assert estimates == sorted(estimates, reverse=True)
    assert len(set(estimates)) == len(estimates)
    assert estimates[2] == pytest.approx(0.1 * math.exp(-1.0), rel=1e-12)
    assert estimates[-1] < 1e-40


def latency_endpoint(index: int, rtt: float, in_flight: int = 0) -> Endpoint:
    ewma = PeakEwma(PeakEwmaConfig(decay=10.0, default_rtt=rtt), now=0.0)
    return Endpoint(f"api/{index}", index=index, in_flight=in_flight, latency=ewma)


def peak_ewma_picks(endpoints: list[Endpoint], picks: int, seed: int = 0, now: float = 0.0) -> list[int]:
    picker = build_picker(BalancerConfig(policy="peak_ewma"), endpoints, random.Random(seed), now=lambda: now)
    assert isinstance(picker, PeakEwmaPicker)
    chosen = []
    for _ in range(picks):
        endpoint = picker.pick(None)
        assert endpoint is not None
        chosen.append(endpoint.index)
    return chosen


def test_peak_ewma_picker_with_two_endpoints_always_picks_the_cheaper() -> None:
    fast, slow = latency_endpoint(0, 0.010), latency_endpoint(1, 0.050)
    for seed in range(5):
        assert set(peak_ewma_picks([fast, slow], 50, seed)) == {0}
        assert set(peak_ewma_picks([slow, fast], 50, seed)) == {0}


def test_peak_ewma_picker_cost_counts_calls_in_flight() -> None:
    # 0.010 * (4 + 1) = 0.050 > 0.030 * (0 + 1): the slower but idle endpoint is cheaper.
    busy_fast, idle_slow = latency_endpoint(0, 0.010, in_flight=4), latency_endpoint(1, 0.030)
    assert set(peak_ewma_picks([busy_fast, idle_slow], 50)) == {1}
    # 0.010 * 2 = 0.020 < 0.030: now the fast one wins.
    busy_fast.in_flight = 1
    assert set(peak_ewma_picks([busy_fast, idle_slow], 50)) == {0}


def test_peak_ewma_picker_reads_the_estimate_at_the_current_time() -> None:
    # b observed a slow sample long ago, a a moderate one just now: at now=100, b has decayed.
    a, b = latency_endpoint(0, 0.001), latency_endpoint(1, 0.001)
    assert a.latency is not None
    assert b.latency is not None
    b.latency.observe(1.0, 0.0)
    a.latency.observe(0.1, 100.0)
    assert set(peak_ewma_picks([a, b], 20, now=0.0)) == {0}
    assert set(peak_ewma_picks([a, b], 20, now=100.0)) == {1}  # 1.0 * e^-10 < 0.1


def test_peak_ewma_picker_single_endpoint_is_always_picked() -> None:
    only = latency_endpoint(0, 5.0, in_flight=100)
    assert peak_ewma_picks([only], 20) == [0] * 20


def test_peak_ewma_picker_spreads_among_many_by_cost() -> None:
    endpoints = [latency_endpoint(i, 0.010 * (i + 1)) for i in range(5)]
    picks = peak_ewma_picks(endpoints, 2000, seed=11)
    counts = [picks.count(i) for i in range(5)]
    # The slowest is never the cheaper of two; the fastest always is.
    assert counts[4] == 0
    assert counts == sorted(counts, reverse=True)
    assert counts[0] > 700  # it wins every pair it is in: 2/5 of the picks


def test_peak_ewma_needs_a_clock() -> None:
    picker = build_picker(
        BalancerConfig(policy="peak_ewma"), [latency_endpoint(0, 0.01), latency_endpoint(1, 0.02)], random.Random(0)
    )
    with pytest.raises(RuntimeError, match="clock"):
        picker.pick(None)
