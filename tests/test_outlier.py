"""Outlier detection (gRPC A50, Envoy): consecutive failures, success rate, failure
percentage, ejection times and the caps on how many are out.
"""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meshsim.core.outlier import (
    ConsecutiveFailuresConfig,
    Ejection,
    FailurePercentageConfig,
    OutlierConfig,
    OutlierDetector,
    SuccessRateConfig,
)
from meshsim.core.status import StatusCode
from tests.resilience import FAIL, OK


def names(count: int) -> list[str]:
    return [f"api/{i}" for i in range(count)]


# Envoy's max_ejection_percent rule, with one host always ejectable: meshsim's rule before the presets.
ENVOY_CAP: dict[str, object] = {"ejection_cap": "prospective", "always_eject_one_host": True}


def detector(count: int, seed: int = 0, **overrides: object) -> OutlierDetector:
    options: dict[str, object] = {
        "interval": 10.0,
        "base_ejection_time": 30.0,
        "max_ejection_time": 300.0,
        "max_ejection_percent": 100.0,
    }
    options.update(overrides)
    return OutlierDetector(OutlierConfig(**options), names(count), random.Random(seed))  # type: ignore[arg-type]


def consecutive(threshold: int = 3, **overrides: object) -> ConsecutiveFailuresConfig:
    return ConsecutiveFailuresConfig(threshold=threshold, **overrides)  # type: ignore[arg-type]


def record_many(od: OutlierDetector, endpoint: str, ok: int, failed: int, now: float = 0.0) -> list[Ejection]:
    ejections = [od.record(endpoint, OK, now) for _ in range(ok)]
    ejections += [od.record(endpoint, FAIL, now) for _ in range(failed)]
    return [e for e in ejections if e is not None]


def test_outlier_config_defaults() -> None:
    config = OutlierConfig()
    assert (config.interval, config.base_ejection_time, config.max_ejection_time) == (10.0, 30.0, 300.0)
    assert config.max_ejection_percent == 10.0
    assert config.consecutive_failures is None
    assert config.success_rate is None
    assert config.failure_percentage is None
    assert ConsecutiveFailuresConfig().threshold == 5
    assert (SuccessRateConfig().stdev_factor, SuccessRateConfig().minimum_hosts) == (1900, 5)
    assert SuccessRateConfig().request_volume == 100
    assert (FailurePercentageConfig().threshold, FailurePercentageConfig().request_volume) == (85.0, 50)


def test_consecutive_failures_eject_at_exactly_the_threshold() -> None:
    od = detector(3, consecutive_failures=consecutive(threshold=3))
    assert od.record("api/0", FAIL, 1.0) is None
    assert od.record("api/0", FAIL, 1.0) is None
    assert not od.is_ejected("api/0")
    assert od.record("api/0", FAIL, 1.5) == Ejection("api/0", "consecutive_failures", 30.0)
    assert od.is_ejected("api/0")
    assert od.ejected == ["api/0"]


def test_an_ok_resets_the_consecutive_count() -> None:
    od = detector(3, consecutive_failures=consecutive(threshold=3))
    for _ in range(5):
        assert od.record("api/0", FAIL, 0.0) is None
        assert od.record("api/0", FAIL, 0.0) is None
        assert od.record("api/0", OK, 0.0) is None
    assert od.ejected == []
    assert od.record("api/0", FAIL, 0.0) is None
    assert od.record("api/0", FAIL, 0.0) is None
    assert od.record("api/0", FAIL, 0.0) is not None


def test_consecutive_failures_are_counted_per_endpoint() -> None:
    od = detector(3, consecutive_failures=consecutive(threshold=3))
    for _ in range(2):
        for name in names(3):
            assert od.record(name, FAIL, 0.0) is None
    assert od.ejected == []


def test_statuses_outside_the_consecutive_set_do_not_count() -> None:
    od = detector(3, consecutive_failures=consecutive(threshold=3, status_codes=frozenset({StatusCode.INTERNAL})))
    for _ in range(10):
        assert od.record("api/0", StatusCode.UNAVAILABLE, 0.0) is None
        assert od.record("api/0", StatusCode.CANCELLED, 0.0) is None
    assert od.ejected == []
    assert od.record("api/0", StatusCode.INTERNAL, 0.0) is None
    assert od.record("api/0", StatusCode.INTERNAL, 0.0) is None
    assert od.record("api/0", StatusCode.INTERNAL, 0.0) is not None


def test_a_returning_endpoint_needs_a_full_run_of_failures_to_be_ejected_again() -> None:
    # Calls already in flight to an ejected endpoint still end and are recorded. Envoy resets the
    # consecutive counters when a host returns ("to avoid re-ejection on very few new errors",
    # DetectorImpl::checkHostForUneject), so failures from the ejected period must not carry over.
    od = detector(3, consecutive_failures=consecutive(threshold=3))
    for _ in range(3):
        od.record("api/0", FAIL, 0.0)
    assert od.is_ejected("api/0")
    for _ in range(5):
        assert od.record("api/0", FAIL, 1.0) is None  # in-flight calls failing while ejected
    assert od.sweep(30.0) == ([], ["api/0"])
    assert od.record("api/0", FAIL, 31.0) is None
    assert od.record("api/0", FAIL, 31.0) is None
    assert not od.is_ejected("api/0")
    assert od.record("api/0", FAIL, 31.0) is not None  # the third new failure


def test_cancelled_does_not_count_by_default() -> None:
    od = detector(3, consecutive_failures=consecutive(threshold=3))
    for _ in range(10):
        assert od.record("api/0", StatusCode.CANCELLED, 0.0) is None
    assert od.ejected == []


def success_rate_detector(count: int, **overrides: object) -> OutlierDetector:
    options: dict[str, object] = {"stdev_factor": 1900, "minimum_hosts": 5, "request_volume": 10}
    options.update(overrides)
    return detector(count, success_rate=SuccessRateConfig(**options))  # type: ignore[arg-type]


def test_success_rate_ejects_the_endpoint_below_mean_minus_factor_stdev() -> None:
    od = success_rate_detector(5)
    for name in names(4):
        record_many(od, name, ok=10, failed=0)
    record_many(od, "api/4", ok=5, failed=5)
    # Rates 1,1,1,1,0.5: mean 0.9, stdev 0.2, floor 0.9 - 0.2 * 1.9 = 0.52 > 0.5.
    ejections, returned = od.sweep(10.0)
    assert ejections == [Ejection("api/4", "success_rate", 30.0)]
    assert returned == []
    assert od.ejected == ["api/4"]


def test_success_rate_floor_is_exact() -> None:
    # A lone outlier among five sits exactly 2 standard deviations below the mean,
    # so a factor of 1.999 ejects it and 2.0 (not strictly below) does not.
    # Rates are powers-of-two fractions so that mean and stdev are exact.
    for factor, ejected in ((1999, ["api/4"]), (2000, []), (2100, [])):
        od = success_rate_detector(5, stdev_factor=factor, request_volume=8)
        for name in names(4):
            record_many(od, name, ok=8, failed=0)
        record_many(od, "api/4", ok=4, failed=4)
        od.sweep(10.0)
        assert od.ejected == ejected, factor


def test_success_rate_needs_minimum_hosts_with_request_volume() -> None:
    od = success_rate_detector(5)
    for name in names(4):
        record_many(od, name, ok=10, failed=0)
    record_many(od, "api/4", ok=0, failed=9)  # one call short of request_volume: 4 candidates < 5
    assert od.sweep(10.0) == ([], [])
    # Six endpoints, five with enough calls: now there are enough candidates.
    od = success_rate_detector(6)
    for name in names(4):
        record_many(od, name, ok=10, failed=0)
    record_many(od, "api/4", ok=0, failed=10)
    record_many(od, "api/5", ok=0, failed=9)  # not a candidate, so not ejected however bad
    ejections, _ = od.sweep(10.0)
    assert [e.endpoint for e in ejections] == ["api/4"]


def test_success_rate_with_equal_rates_ejects_nobody() -> None:
    od = success_rate_detector(5)
    for name in names(5):
        record_many(od, name, ok=5, failed=5)
    assert od.sweep(10.0) == ([], [])


def failure_percentage_detector(count: int, **overrides: object) -> OutlierDetector:
    options: dict[str, object] = {"threshold": 50.0, "minimum_hosts": 5, "request_volume": 10}
    options.update(overrides)
    return detector(count, failure_percentage=FailurePercentageConfig(**options))  # type: ignore[arg-type]


def test_failure_percentage_ejects_above_its_threshold() -> None:
    od = failure_percentage_detector(5)
    record_many(od, "api/0", ok=4, failed=6)  # 60% > 50%
    record_many(od, "api/1", ok=5, failed=5)  # 50%: not above
    for name in names(5)[2:]:
        record_many(od, name, ok=10, failed=0)
    ejections, _ = od.sweep(10.0)
    assert ejections == [Ejection("api/0", "failure_percentage", 30.0)]
    assert od.ejected == ["api/0"]


def test_failure_percentage_needs_minimum_hosts_with_request_volume() -> None:
    od = failure_percentage_detector(5)
    record_many(od, "api/0", ok=0, failed=10)
    for name in names(5)[1:4]:
        record_many(od, name, ok=10, failed=0)
    record_many(od, "api/4", ok=9, failed=0)  # 4 candidates < 5
    assert od.sweep(10.0) == ([], [])
    od = failure_percentage_detector(5, minimum_hosts=4)
    record_many(od, "api/0", ok=0, failed=10)
    for name in names(5)[1:4]:
        record_many(od, name, ok=10, failed=0)
    record_many(od, "api/4", ok=0, failed=9)  # below request_volume: never a candidate
    ejections, _ = od.sweep(10.0)
    assert [e.endpoint for e in ejections] == ["api/0"]


def test_non_failure_statuses_are_neither_successes_nor_failures() -> None:
    od = failure_percentage_detector(5)
    record_many(od, "api/0", ok=4, failed=6)
    for _ in range(100):
        od.record("api/0", StatusCode.NOT_FOUND, 0.0)  # would dilute 60% if counted as success
    for name in names(5)[1:]:
        record_many(od, name, ok=10, failed=0)
    ejections, _ = od.sweep(10.0)
    assert [e.endpoint for e in ejections] == ["api/0"]


def test_counters_reset_at_each_sweep() -> None:
    od = failure_percentage_detector(5)
    for sweep in range(1, 4):
        record_many(od, "api/0", ok=0, failed=5)  # 5 per interval, request_volume is 10
        for name in names(5)[1:]:
            record_many(od, name, ok=10, failed=0)
        assert od.sweep(10.0 * sweep) == ([], [])
    assert od.ejected == []


def test_ejection_time_grows_with_the_multiplier_and_is_capped() -> None:
    od = detector(3, base_ejection_time=30.0, max_ejection_time=100.0, consecutive_failures=consecutive(threshold=1))
    durations = []
    now = 0.0
    for _ in range(5):
        ejection = od.record("api/0", FAIL, now)
        assert ejection is not None
        durations.append(ejection.duration)
        # Sweep every 10 s until it is back.
        while True:
            now += 10.0
            _, returned = od.sweep(now)
            if returned:
                assert returned == ["api/0"]
                break
    # 30, 60, 90, then capped at max(30, 100) = 100.
    assert durations == [30.0, 60.0, 90.0, 100.0, 100.0]


def test_ejection_cap_is_at_least_base_ejection_time() -> None:
    od = detector(3, base_ejection_time=30.0, max_ejection_time=10.0, consecutive_failures=consecutive(threshold=1))
    durations = []
    for now in (0.0, 30.0, 60.0, 90.0):
        ejection = od.record("api/0", FAIL, now)
        assert ejection is not None
        durations.append(ejection.duration)
        assert od.sweep(now + 30.0)[1] == ["api/0"]
    assert durations == [30.0] * 4


def test_an_endpoint_returns_at_the_first_sweep_at_or_after_its_ejection_time() -> None:
    od = detector(3, base_ejection_time=30.0, consecutive_failures=consecutive(threshold=1))
    assert od.record("api/1", FAIL, 5.0) is not None  # back at 35.0
    for now in (10.0, 20.0, 30.0, 34.999):
        assert od.sweep(now) == ([], [])
        assert od.is_ejected("api/1")
    assert od.sweep(35.0) == ([], ["api/1"])
    assert not od.is_ejected("api/1")
    assert od.ejected == []
    # A late sweep returns it too.
    assert od.record("api/1", FAIL, 40.0) is not None  # multiplier 2: back at 100.0
    assert od.sweep(99.0) == ([], [])
    assert od.sweep(170.0) == ([], ["api/1"])


def test_multiplier_decays_by_one_per_sweep_in_rotation() -> None:
    od = detector(3, base_ejection_time=30.0, consecutive_failures=consecutive(threshold=1))
    od.record("api/0", FAIL, 0.0)  # multiplier 1, 30 s
    assert od.sweep(30.0)[1] == ["api/0"]  # no decay in the sweep that returns it
    first = od.record("api/0", FAIL, 30.0)  # multiplier 2, 60 s
    assert first is not None
    assert first.duration == 60.0
    assert od.sweep(90.0)[1] == ["api/0"]
    od.sweep(100.0)  # multiplier 2 -> 1
    again = od.record("api/0", FAIL, 100.0)  # 1 -> 2
    assert again is not None
    assert again.duration == 60.0
    assert od.sweep(160.0)[1] == ["api/0"]
    for now in (170.0, 180.0, 190.0):  # 2 -> 1 -> 0 -> 0 (never negative)
        od.sweep(now)
    last = od.record("api/0", FAIL, 190.0)
    assert last is not None
    assert last.duration == 30.0


def test_multiplier_does_not_decay_while_ejected() -> None:
    od = detector(3, base_ejection_time=30.0, consecutive_failures=consecutive(threshold=1))
    od.record("api/0", FAIL, 0.0)
    assert od.sweep(30.0)[1] == ["api/0"]
    od.record("api/0", FAIL, 30.0)  # multiplier 2: 60 s even with many sweeps in between
    for now in range(40, 90, 10):
        assert od.sweep(float(now)) == ([], [])
    assert od.sweep(90.0)[1] == ["api/0"]


def test_max_ejection_percent_is_checked_after_the_prospective_ejection() -> None:
    # Envoy's rule (ejection_cap = "prospective").
    # 10 endpoints at 20%: a second ejection makes 20% (allowed), a third would make 30%.
    od = detector(10, max_ejection_percent=20.0, consecutive_failures=consecutive(threshold=1), **ENVOY_CAP)
    ejections = [od.record(name, FAIL, 0.0) for name in names(10)]
    assert [e.endpoint for e in ejections if e is not None] == ["api/0", "api/1"]
    assert od.ejected == ["api/0", "api/1"]
    # At 25%, A50's check-before rule would let a third in (2 of 10 = 20% < 25%); after-the-fact it may not.
    od = detector(10, max_ejection_percent=25.0, consecutive_failures=consecutive(threshold=1), **ENVOY_CAP)
    for name in names(10):
        od.record(name, FAIL, 0.0)
    assert len(od.ejected) == 2  # 3/10 = 30% > 25%


def test_max_ejection_percent_applies_to_rate_detectors() -> None:
    od = detector(
        10,
        max_ejection_percent=20.0,
        failure_percentage=FailurePercentageConfig(threshold=50.0, minimum_hosts=5, request_volume=10),
    )
    for name in names(10)[:5]:
        record_many(od, name, ok=0, failed=10)
    for name in names(10)[5:]:
        record_many(od, name, ok=10, failed=0)
    ejections, _ = od.sweep(10.0)
    assert len(ejections) == 2
    assert len(od.ejected) == 2


def test_one_ejection_is_always_allowed_when_none_is_ejected() -> None:
    # 10% of 3 endpoints is 0.3 of an endpoint; one may still be ejected, but only one.
    od = detector(3, max_ejection_percent=10.0, consecutive_failures=consecutive(threshold=1))
    ejections = [od.record(name, FAIL, 0.0) for name in names(3)]
    assert [e.endpoint for e in ejections if e is not None] == ["api/0"]
    assert od.ejected == ["api/0"]
    # Once it is back, another may go.
    assert od.sweep(30.0)[1] == ["api/0"]
    assert od.record("api/2", FAIL, 30.0) is not None


def test_a_single_endpoint_service_never_ejects() -> None:
    od = detector(
        1,
        max_ejection_percent=100.0,
        consecutive_failures=consecutive(threshold=1),
        failure_percentage=FailurePercentageConfig(threshold=0.0, minimum_hosts=1, request_volume=1),
        success_rate=SuccessRateConfig(minimum_hosts=1, request_volume=1),
    )
    for sweep in range(1, 6):
        for _ in range(10):
            assert od.record("api/0", FAIL, float(sweep)) is None
        assert od.sweep(10.0 * sweep) == ([], [])
    assert od.ejected == []


@pytest.mark.parametrize("count", [2, 3, 5])
def test_with_all_endpoints_failing_at_least_one_stays_in(count: int) -> None:
    od = detector(
        count,
        max_ejection_percent=100.0,
        consecutive_failures=consecutive(threshold=1),
        failure_percentage=FailurePercentageConfig(threshold=0.0, minimum_hosts=1, request_volume=1),
    )
    for sweep in range(1, 20):
        for name in names(count):
            od.record(name, FAIL, 10.0 * sweep)
        assert len(od.ejected) == count - 1
        od.sweep(10.0 * sweep)  # some may come back, all at once at most
        assert len(od.ejected) < count


def test_enforcement_percentage_zero_never_ejects() -> None:
    od = detector(
        5,
        consecutive_failures=consecutive(threshold=1, enforcement_percentage=0.0),
        success_rate=SuccessRateConfig(enforcement_percentage=0.0, minimum_hosts=5, request_volume=10),
        failure_percentage=FailurePercentageConfig(
            threshold=10.0, enforcement_percentage=0.0, minimum_hosts=5, request_volume=10
        ),
    )
    for sweep in range(1, 5):
        for name in names(4):
            record_many(od, name, ok=10, failed=0)
        assert record_many(od, "api/4", ok=0, failed=10) == []
        assert od.sweep(10.0 * sweep) == ([], [])
    assert od.ejected == []


def test_enforcement_percentage_ejects_some_of_the_time() -> None:
    ejected = 0
    for seed in range(200):
        od = detector(3, seed=seed, consecutive_failures=consecutive(threshold=1, enforcement_percentage=50.0))
        ejected += od.record("api/0", FAIL, 0.0) is not None
    assert 60 < ejected < 140


outlier_ops = st.lists(
    st.tuples(
        st.sampled_from(["record", "record", "record", "sweep"]),
        st.integers(0, 99),  # which endpoint
        st.sampled_from([OK, FAIL, FAIL, StatusCode.INTERNAL, StatusCode.CANCELLED]),
    ),
    max_size=300,
)


@given(
    ops=outlier_ops,
    count=st.integers(1, 12),
    max_ejection_percent=st.integers(0, 100),
    threshold=st.integers(1, 3),
    seed=st.integers(0, 1000),
    enforcement=st.sampled_from([0.0, 50.0, 100.0]),
)
@settings(max_examples=150, deadline=None)
def test_outlier_detector_respects_the_ejection_caps(
    ops: list[tuple[str, int, StatusCode]],
    count: int,
    max_ejection_percent: int,
    threshold: int,
    seed: int,
    enforcement: float,
) -> None:
    od = detector(
        count,
        seed=seed,
        base_ejection_time=10.0,
        max_ejection_time=40.0,
        max_ejection_percent=float(max_ejection_percent),
        **ENVOY_CAP,
        consecutive_failures=ConsecutiveFailuresConfig(threshold=threshold, enforcement_percentage=enforcement),
        success_rate=SuccessRateConfig(stdev_factor=500, minimum_hosts=2, request_volume=2),
        failure_percentage=FailurePercentageConfig(threshold=30.0, minimum_hosts=1, request_volume=1),
    )
    cap = max(1, math.floor(max_ejection_percent * count / 100))
    endpoints = names(count)
    now = 0.0
    for kind, which, status in ops:
        name = endpoints[which % count]
        if kind == "record":
            ejection = od.record(name, status, now)
            if ejection is not None:
                assert ejection.endpoint == name
                assert 10.0 <= ejection.duration <= 40.0
        else:
            now += 5.0
            ejections, returned = od.sweep(now)
            assert not {e.endpoint for e in ejections} & set(returned)
        ejected = od.ejected
        assert len(ejected) < count  # the last endpoint in rotation stays
        assert len(ejected) <= cap
        assert len(set(ejected)) == len(ejected)
